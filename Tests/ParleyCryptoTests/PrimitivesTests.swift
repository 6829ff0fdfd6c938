import Testing
@testable import ParleyCrypto

@Suite struct PrimitivesTests {
    @Test func sha256KnownVectors() {
        #expect(SHA256.hexDigest(Array("abc".utf8))
            == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Hex.encode(SHA256.digest(""))
            == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.digest("abc").count == 32)
    }

    @Test func constantTimeEqualsBasics() {
        #expect(constantTimeEquals([], []))
        #expect(constantTimeEquals([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEquals([0, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEquals([1, 2, 3], [1, 2]))
        #expect(!constantTimeEquals([], [0]))
    }

    @Test func randomBytesHaveRequestedLengthAndDiffer() {
        #expect(SecureRandom.bytes(count: 0).isEmpty)
        let a = SecureRandom.bytes(count: 32)
        let b = SecureRandom.bytes(count: 32)
        #expect(a.count == 32)
        #expect(a != b)
        #expect(a != [UInt8](repeating: 0, count: 32))
        let hex = SecureRandom.hex(bytes: 16)
        #expect(hex.count == 32)
        #expect(Hex.decode(hex)?.count == 16)
    }

    @Test func hexRoundTripAndStrictDecode() {
        #expect(Hex.encode([0x00, 0x0f, 0xa5, 0xff]) == "000fa5ff")
        #expect(Hex.decode("000FA5ff") == [0x00, 0x0f, 0xa5, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("") == [])
    }

    @Test func unpaddedBase64MatchesStandardAlphabetAndIsStrict() {
        #expect(UnpaddedBase64.encode(Array("f".utf8)) == "Zg")
        #expect(UnpaddedBase64.encode(Array("fo".utf8)) == "Zm8")
        #expect(UnpaddedBase64.encode(Array("foo".utf8)) == "Zm9v")
        #expect(UnpaddedBase64.encode([0xfb, 0xff]) == "+/8")
        #expect(UnpaddedBase64.decode("Zm9vYg") == Array("foob".utf8))
        #expect(UnpaddedBase64.decode("+/8") == [0xfb, 0xff])
        #expect(UnpaddedBase64.decode("Zg==") == nil)
        #expect(UnpaddedBase64.decode("Zh") == nil)   // non-zero trailing bits
        #expect(UnpaddedBase64.decode("Z") == nil)
        #expect(UnpaddedBase64.decode("Zm-v") == nil) // URL-safe alphabet is not PHC's
        for length in 0..<20 {
            let bytes = SecureRandom.bytes(count: length)
            #expect(UnpaddedBase64.decode(Substring(UnpaddedBase64.encode(bytes))) == bytes)
        }
    }

    @Test func openSSLErrorsAreDrainedIntoReasons() {
        // A KDF failure must carry OpenSSL's reason, not a generic message.
        do {
            _ = try PasswordHasher.scrypt(password: [1], salt: [2], n: 1 << 17, r: 8, p: 1, maxmem: 1 << 20, length: 32)
            Issue.record("expected failure")
        } catch {
            #expect(error.description.contains("memory limit"))
        }
    }
}
