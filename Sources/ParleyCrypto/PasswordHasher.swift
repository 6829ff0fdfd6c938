internal import COpenSSL

/// scrypt password hashing through OpenSSL (`EVP_PBE_scrypt`), stored as a PHC string
/// `$scrypt$ln=17,r=8,p=1$<salt>$<hash>` (standard base64, no padding).
///
/// `hash` and `verify` are synchronous and deliberately CPU- and memory-heavy (about 0.4 s and
/// 128 MiB at production cost on this project's 2-core machines): run them on a bounded thread pool, never on an event loop, and
/// bound how many run at once, since each one holds its scrypt buffer for its whole duration.
public struct PasswordHasher: Sendable {
    /// scrypt cost parameters: N = 2^ln, block size r, parallelism p.
    public struct Parameters: Sendable, Hashable, CustomStringConvertible {
        /// log2 of the CPU/memory cost N.
        public var ln: Int
        /// Block size factor.
        public var r: Int
        /// Parallelisation factor.
        public var p: Int

        public init(ln: Int, r: Int, p: Int) {
            self.ln = ln
            self.r = r
            self.p = p
        }

        /// Cost for stored passwords: N=2^17, r=8, p=1 (128 MiB, about 0.4 s on a 2-core dev machine).
        public static let production = Parameters(ln: 17, r: 8, p: 1)
        /// Cheap cost for tests and benchmarks only (1 MiB); never for real accounts.
        public static let testing = Parameters(ln: 10, r: 8, p: 1)

        /// Bounds on parameters we will run, whether configured or read back from storage. A tampered
        /// `ln=30` would otherwise make one login allocate 128 GiB and spin for minutes.
        public static let lnBounds = 10...20
        public static let rBounds = 1...16
        public static let pBounds = 1...4

        /// Whether these parameters are inside the accepted bounds.
        public var isWithinBounds: Bool {
            Self.lnBounds.contains(ln) && Self.rBounds.contains(r) && Self.pBounds.contains(p)
        }

        /// Bytes scrypt will allocate: OpenSSL checks 128*r*(N+p+2) against `maxmem`.
        var memoryBytes: UInt64 {
            128 * UInt64(r) * ((UInt64(1) << UInt64(ln)) + UInt64(p) + 2)
        }

        public var description: String { "ln=\(ln),r=\(r),p=\(p)" }
    }

    /// Salt length in bytes for new hashes.
    public static let saltLength = 16
    /// Derived key length in bytes for new hashes.
    public static let hashLength = 32

    /// Parameters used for new hashes and as the floor for `needsRehash`.
    public let parameters: Parameters

    public init(parameters: Parameters = .production) {
        self.parameters = parameters
    }

    /// Hashes `password` with a fresh random salt and returns the PHC string to store.
    public func hash(password: String) throws(CryptoError) -> String {
        guard parameters.isWithinBounds else {
            throw .parametersOutOfBounds(ln: parameters.ln, r: parameters.r, p: parameters.p)
        }
        let salt = try SecureRandom.checkedBytes(count: Self.saltLength)
        let key = try Self.derive(password: password, salt: salt, parameters: parameters, length: Self.hashLength)
        return PHCString(parameters: parameters, salt: salt, hash: key).encoded
    }

    /// Whether `password` matches the stored PHC string, compared in constant time. Throws for a
    /// malformed, foreign or out-of-bounds string, or one costing more than this hasher issues,
    /// rather than returning false, so that storage corruption or tampering is visible instead of
    /// looking like a wrong password.
    public func verify(password: String, against phc: String) throws(CryptoError) -> Bool {
        let stored = try PHCString(parsing: phc)
        // The global bounds still allow ~2 GiB per check (ln=20, r=16); nothing this server wrote
        // costs more than its own setting, so anything above it is refused before allocating.
        let cost = stored.parameters
        guard cost.ln <= parameters.ln, cost.r <= parameters.r, cost.p <= parameters.p else {
            throw .costAboveIssued(ln: cost.ln, r: cost.r, p: cost.p, limit: parameters)
        }
        let key = try Self.derive(password: password, salt: stored.salt, parameters: stored.parameters,
                                  length: stored.hash.count)
        return constantTimeEquals(key, stored.hash)
    }

    /// Whether a stored hash should be replaced (after a successful login) because its cost or
    /// lengths are below the configured ones. Unparseable strings also need replacing.
    public func needsRehash(phc: String) -> Bool {
        guard let stored = try? PHCString(parsing: phc) else { return true }
        let p = stored.parameters
        return p.ln < parameters.ln || p.r < parameters.r || p.p < parameters.p
            || stored.salt.count < Self.saltLength || stored.hash.count < Self.hashLength
    }

    /// Parameters recorded in a PHC string, validated and bounded like `verify` does.
    public static func parameters(of phc: String) throws(CryptoError) -> Parameters {
        try PHCString(parsing: phc).parameters
    }

    private static func derive(password: String, salt: [UInt8], parameters: Parameters,
                               length: Int) throws(CryptoError) -> [UInt8] {
        guard parameters.isWithinBounds else {
            throw .parametersOutOfBounds(ln: parameters.ln, r: parameters.r, p: parameters.p)
        }
        // OpenSSL's default cap is 32 MiB, below production cost, so pass exactly what these bounded
        // parameters need; the bounds check above is what keeps the allocation from being chosen
        // by whoever can write the stored string.
        return try scrypt(password: Array(password.utf8), salt: salt, n: UInt64(1) << UInt64(parameters.ln),
                          r: UInt64(parameters.r), p: UInt64(parameters.p), maxmem: parameters.memoryBytes,
                          length: length)
    }

    /// Raw scrypt with no bounds: only for `derive` (after its checks) and known-answer tests.
    static func scrypt(password passwordBytes: [UInt8], salt: [UInt8], n: UInt64, r: UInt64, p: UInt64,
                       maxmem: UInt64, length: Int) throws(CryptoError) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: length)
        ERR_clear_error()
        let ok = passwordBytes.withUnsafeBufferPointer { pw in
            salt.withUnsafeBufferPointer { s in
                key.withUnsafeMutableBufferPointer { out in
                    pw.withMemoryRebound(to: CChar.self) { pwChars in
                        EVP_PBE_scrypt(pwChars.baseAddress, pw.count, s.baseAddress, s.count,
                                       n, r, p, maxmem, out.baseAddress, out.count)
                    }
                }
            }
        }
        guard ok == 1 else { throw .kdfFailed(reason: drainOpenSSLErrors()) }
        return key
    }
}

/// The parsed form of `$scrypt$ln=..,r=..,p=..$salt$hash`.
struct PHCString: Equatable {
    static let saltLengths = 8...64
    static let hashLengths = 16...64

    let parameters: PasswordHasher.Parameters
    let salt: [UInt8]
    let hash: [UInt8]

    init(parameters: PasswordHasher.Parameters, salt: [UInt8], hash: [UInt8]) {
        self.parameters = parameters
        self.salt = salt
        self.hash = hash
    }

    init(parsing text: String) throws(CryptoError) {
        let fields = text.split(separator: "$", omittingEmptySubsequences: false)
        guard fields.count >= 2, fields[0].isEmpty else { throw .malformedHash(reason: "must start with $id") }
        guard fields[1] == "scrypt" else { throw .unsupportedAlgorithm(String(fields[1].prefix(32))) }
        guard fields.count == 5 else { throw .malformedHash(reason: "expected 4 fields, found \(fields.count - 1)") }

        let pairs = fields[2].split(separator: ",", omittingEmptySubsequences: false)
        guard pairs.count == 3 else { throw .malformedHash(reason: "expected ln, r, p") }
        let ln = try Self.number(pairs[0], key: "ln")
        let r = try Self.number(pairs[1], key: "r")
        let p = try Self.number(pairs[2], key: "p")
        let parameters = PasswordHasher.Parameters(ln: ln, r: r, p: p)
        guard parameters.isWithinBounds else { throw .parametersOutOfBounds(ln: ln, r: r, p: p) }

        guard let salt = UnpaddedBase64.decode(fields[3]), Self.saltLengths.contains(salt.count) else {
            throw .malformedHash(reason: "bad salt")
        }
        guard let hash = UnpaddedBase64.decode(fields[4]), Self.hashLengths.contains(hash.count) else {
            throw .malformedHash(reason: "bad hash")
        }
        self.init(parameters: parameters, salt: salt, hash: hash)
    }

    var encoded: String {
        "$scrypt$\(parameters)$\(UnpaddedBase64.encode(salt))$\(UnpaddedBase64.encode(hash))"
    }

    /// Parses `key=digits` strictly: at most 4 ASCII digits, no sign, no leading zero, so the
    /// value cannot overflow and each number has one spelling.
    private static func number(_ pair: Substring, key: String) throws(CryptoError) -> Int {
        let prefix = key + "="
        guard pair.hasPrefix(prefix) else { throw .malformedHash(reason: "expected \(key)=") }
        let digits = pair.dropFirst(prefix.count)
        guard (1...4).contains(digits.count), digits.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              digits.count == 1 || digits.first != "0", let value = Int(digits) else {
            throw .malformedHash(reason: "bad value for \(key)")
        }
        return value
    }
}
