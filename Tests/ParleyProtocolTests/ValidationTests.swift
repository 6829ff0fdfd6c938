import Testing
@testable import ParleyProtocol

@Suite struct ValidationTests {
    @Test(arguments: ["a", "A", "0", "alice", "Bob_99", "x.y-z", String(repeating: "a", count: 32)])
    func validUsernames(_ name: String) {
        #expect(Validation.isValidUsername(name))
    }

    @Test(arguments: ["", "_a", "-a", ".a", "a b", "a@b", "é", "a\n", String(repeating: "a", count: 33), "a\u{0}"])
    func invalidUsernames(_ name: String) {
        #expect(!Validation.isValidUsername(name))
    }

    @Test func canonicalForm() {
        #expect(Validation.canonicalUsername("Alice.B_9") == "alice.b_9")
        #expect(Validation.canonicalUsername("ALICE") == Validation.canonicalUsername("alice"))
    }

    @Test func passwords() {
        #expect(!Validation.isValidPassword("1234567"))
        #expect(Validation.isValidPassword("12345678"))
        #expect(Validation.isValidPassword("ééééé"))  // 10 bytes, 5 characters
        #expect(!Validation.isValidPassword("ééé"))  // 6 bytes
        #expect(Validation.isValidPassword(String(repeating: "x", count: 1024)))
        #expect(!Validation.isValidPassword(String(repeating: "x", count: 1025)))
    }

    @Test func textAndFingerprints() {
        #expect(!Validation.isValidText(""))
        #expect(Validation.isValidText(String(repeating: "x", count: 4096)))
        #expect(!Validation.isValidText(String(repeating: "x", count: 4097)))
        #expect(Validation.isValidFingerprint(String(repeating: "0f", count: 32)))
        #expect(!Validation.isValidFingerprint(String(repeating: "0F", count: 32)))
        #expect(!Validation.isValidFingerprint(String(repeating: "0f", count: 31)))
    }
}
