import Testing
@testable import ParleyCrypto

@Suite struct PasswordHasherTests {
    let hasher = PasswordHasher(parameters: .testing)

    @Test func hashIsPHCAndNotThePassword() throws {
        let phc = try hasher.hash(password: "hunter2")
        #expect(phc != "hunter2")
        #expect(!phc.contains("hunter2"))
        #expect(phc.hasPrefix("$scrypt$ln=10,r=8,p=1$"))
        let fields = phc.split(separator: "$")
        #expect(fields.count == 4)
        #expect(!fields[2].contains("=") && !fields[3].contains("="))
        let parsed = try PHCString(parsing: phc)
        #expect(parsed.salt.count == PasswordHasher.saltLength)
        #expect(parsed.hash.count == PasswordHasher.hashLength)
        #expect(parsed.encoded == phc)
    }

    @Test func equalPasswordsHashDifferently() throws {
        let a = try hasher.hash(password: "same password")
        let b = try hasher.hash(password: "same password")
        #expect(a != b)
        #expect(try hasher.verify(password: "same password", against: a))
        #expect(try hasher.verify(password: "same password", against: b))
    }

    @Test func verifyAcceptsRightAndRejectsWrong() throws {
        let phc = try hasher.hash(password: "correct horse")
        #expect(try hasher.verify(password: "correct horse", against: phc))
        #expect(try !hasher.verify(password: "correct horsf", against: phc))
        #expect(try !hasher.verify(password: "", against: phc))
        #expect(try !hasher.verify(password: "Correct horse", against: phc))
    }

    @Test func unicodePasswordsRoundTrip() throws {
        let phc = try hasher.hash(password: "pässwörd🔑")
        #expect(try hasher.verify(password: "pässwörd🔑", against: phc))
        #expect(try !hasher.verify(password: "passwordd", against: phc))
    }

    @Test func parametersRoundTripInTheString() throws {
        let custom = PasswordHasher(parameters: .init(ln: 11, r: 4, p: 2))
        let phc = try custom.hash(password: "x")
        #expect(phc.hasPrefix("$scrypt$ln=11,r=4,p=2$"))
        #expect(try PasswordHasher.parameters(of: phc) == .init(ln: 11, r: 4, p: 2))
        // A hasher configured differently (but at least as high) verifies with the string's own parameters.
        #expect(try PasswordHasher(parameters: .init(ln: 12, r: 8, p: 2)).verify(password: "x", against: phc))
    }

    @Test func storedCostAboveTheIssuingCostIsRefusedBeforeRunning() throws {
        // ln=20, r=16 is inside the global bounds (about 2 GiB per check) but above what a server at
        // production cost ever writes: refused with a typed error, quickly, without allocating.
        let production = PasswordHasher()
        let salt = UnpaddedBase64.encode([UInt8](repeating: 7, count: 16))
        let key = UnpaddedBase64.encode([UInt8](repeating: 9, count: 32))
        let clock = ContinuousClock()
        for (ln, r, p) in [(20, 16, 1), (18, 8, 1), (17, 9, 1), (17, 8, 2)] {
            let phc = "$scrypt$ln=\(ln),r=\(r),p=\(p)$\(salt)$\(key)"
            let elapsed = clock.measure {
                #expect(throws: CryptoError.costAboveIssued(ln: ln, r: r, p: p, limit: .production)) {
                    try production.verify(password: "pw", against: phc)
                }
            }
            #expect(elapsed < .seconds(1))
        }
        // At or below the issuing cost, each parameter alone: still checked (a wrong password, not an error).
        let cheap = "$scrypt$ln=10,r=8,p=1$\(salt)$\(key)"
        #expect(try !production.verify(password: "pw", against: cheap))
        #expect(throws: CryptoError.costAboveIssued(ln: 10, r: 8, p: 1, limit: .init(ln: 10, r: 4, p: 1))) {
            try PasswordHasher(parameters: .init(ln: 10, r: 4, p: 1)).verify(password: "pw", against: cheap)
        }
    }

    @Test func rfc7914KnownAnswers() throws {
        // RFC 7914 section 12; p=16 is outside the PHC bounds, so call the raw KDF directly.
        let empty = try PasswordHasher.scrypt(password: [], salt: [], n: 16, r: 1, p: 1, maxmem: 1 << 20, length: 64)
        #expect(Hex.encode(empty) == "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede2144"
            + "2fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906")
        let nacl = try PasswordHasher.scrypt(password: Array("password".utf8), salt: Array("NaCl".utf8),
                                             n: 1024, r: 8, p: 16, maxmem: 32 << 20, length: 64)
        #expect(Hex.encode(nacl) == "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
            + "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640")
    }

    @Test func verifiesAPHCStringFromAnotherImplementation() throws {
        // Made with Python's hashlib.scrypt and standard base64 minus padding: proves the string
        // format interoperates, not just round-trips through our own encoder.
        let phc = "$scrypt$ln=10,r=8,p=1$MDEyMzQ1Njc4OWFiY2RlZg$7AnzIswxwEinpwz+ntydndYfVHPvOACmX9Vvo8hO1qM"
        #expect(try hasher.verify(password: "correct horse battery staple", against: phc))
        #expect(try !hasher.verify(password: "correct horse battery stapler", against: phc))
    }

    @Test func memoryCapIsEnforcedByOpenSSL() {
        // Proves maxmem reaches OpenSSL: N=2^17, r=8 needs ~128 MiB, so a 32 MiB cap must fail.
        #expect(throws: CryptoError.self) {
            try PasswordHasher.scrypt(password: [1], salt: [2], n: 1 << 17, r: 8, p: 1, maxmem: 32 << 20, length: 32)
        }
    }

    @Test(arguments: [
        "",
        "scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$r=8,ln=10,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=010,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=+10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=99999999999999999999,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAA!AAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAB$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
        "$scrypt$ln=10,r=8,p=1$$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$",
        "$scrypt$ln=10,,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1,x=2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ",
        "$scrypt$ln=10,r=8,p=1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "$scrypt$ln=10,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA$extra",
    ])
    func malformedStringsAreRejected(phc: String) {
        #expect(throws: CryptoError.self) { try hasher.verify(password: "x", against: phc) }
        #expect(hasher.needsRehash(phc: phc))
    }

    @Test func otherAlgorithmsAreRejected() {
        let argon = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
        #expect(throws: CryptoError.unsupportedAlgorithm("argon2id")) {
            try hasher.verify(password: "x", against: argon)
        }
    }

    @Test func tamperedCostIsRejectedBeforeRunning() throws {
        let phc = try hasher.hash(password: "pw")
        for (from, to, expected) in [
            ("ln=10", "ln=30", CryptoError.parametersOutOfBounds(ln: 30, r: 8, p: 1)),
            ("ln=10", "ln=9", .parametersOutOfBounds(ln: 9, r: 8, p: 1)),
            ("r=8", "r=17", .parametersOutOfBounds(ln: 10, r: 17, p: 1)),
            ("p=1", "p=5", .parametersOutOfBounds(ln: 10, r: 8, p: 5)),
            ("r=8", "r=0", .parametersOutOfBounds(ln: 10, r: 0, p: 1)),
        ] {
            let tampered = phc.replacingFirst(from, with: to)
            #expect(tampered != phc)
            #expect(throws: expected) { try hasher.verify(password: "pw", against: tampered) }
        }
    }

    @Test func tamperedHashBytesFailVerification() throws {
        let phc = try hasher.hash(password: "pw")
        var parsed = try PHCString(parsing: phc)
        var flipped = parsed.hash
        flipped[0] ^= 0x01
        parsed = PHCString(parameters: parsed.parameters, salt: parsed.salt, hash: flipped)
        #expect(try !hasher.verify(password: "pw", against: parsed.encoded))
    }

    @Test func configuredOutOfBoundsParametersRefuseToHash() {
        let silly = PasswordHasher(parameters: .init(ln: 30, r: 8, p: 1))
        #expect(throws: CryptoError.parametersOutOfBounds(ln: 30, r: 8, p: 1)) {
            try silly.hash(password: "x")
        }
    }

    @Test func needsRehashWhenBelowConfiguredCost() throws {
        let cheap = try hasher.hash(password: "pw")
        #expect(!hasher.needsRehash(phc: cheap))
        #expect(PasswordHasher(parameters: .init(ln: 11, r: 8, p: 1)).needsRehash(phc: cheap))
        #expect(PasswordHasher(parameters: .init(ln: 10, r: 16, p: 1)).needsRehash(phc: cheap))
        #expect(PasswordHasher(parameters: .init(ln: 10, r: 8, p: 2)).needsRehash(phc: cheap))
        #expect(PasswordHasher(parameters: .production).needsRehash(phc: cheap))
        #expect(!PasswordHasher(parameters: .init(ln: 10, r: 1, p: 1)).needsRehash(phc: cheap))
    }

    @Test func productionCostHashesAboveOpenSSLsDefaultMemoryCap() throws {
        // 128 MiB exceeds OpenSSL's 32 MiB default; this fails with "memory limit exceeded" if
        // maxmem is not passed correctly.
        let production = PasswordHasher()
        let clock = ContinuousClock()
        var phc = ""
        let elapsed = try clock.measure { phc = try production.hash(password: "production") }
        #expect(phc.hasPrefix("$scrypt$ln=17,r=8,p=1$"))
        #expect(try production.verify(password: "production", against: phc))
        #expect(!production.needsRehash(phc: phc))
        print("production scrypt hash (ln=17,r=8,p=1): \(elapsed)")
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) {
                return String(self[..<index]) + replacement + String(self[self.index(index, offsetBy: target.count)...])
            }
            index = self.index(after: index)
        }
        return self
    }
}
