internal import COpenSSL

/// Failures of the crypto primitives, carrying OpenSSL's reason string where OpenSSL produced one.
public enum CryptoError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The system random generator failed; nothing secret may be derived from its output.
    case randomFailed(reason: String)
    /// The scrypt KDF refused or failed (for example, a memory limit).
    case kdfFailed(reason: String)
    /// A digest computation failed inside OpenSSL.
    case digestFailed(reason: String)
    /// A stored hash string is not a well-formed PHC scrypt string.
    case malformedHash(reason: String)
    /// A stored hash names an algorithm other than scrypt.
    case unsupportedAlgorithm(String)
    /// Cost parameters outside the accepted bounds; refused before any work is done.
    case parametersOutOfBounds(ln: Int, r: Int, p: Int)
    /// A stored hash costs more than this hasher issues (each of ln, r, p at most its own); refused
    /// before any work, since only tampering or a foreign import can put it there.
    case costAboveIssued(ln: Int, r: Int, p: Int, limit: PasswordHasher.Parameters)

    public var description: String {
        switch self {
        case .randomFailed(let reason): "random generator failed: \(reason)"
        case .kdfFailed(let reason): "scrypt failed: \(reason)"
        case .digestFailed(let reason): "digest failed: \(reason)"
        case .malformedHash(let reason): "malformed password hash: \(reason)"
        case .unsupportedAlgorithm(let name): "unsupported password hash algorithm: \(name)"
        case .parametersOutOfBounds(let ln, let r, let p): "scrypt parameters out of bounds: ln=\(ln), r=\(r), p=\(p)"
        case .costAboveIssued(let ln, let r, let p, let limit):
            "stored scrypt cost ln=\(ln), r=\(r), p=\(p) exceeds what this server issues (\(limit))"
        }
    }
}

/// OpenSSL's thread-local error queue, shared by every Parley module that calls OpenSSL.
public enum OpenSSLErrors {
    /// Empties the queue into readable reasons, so a stale error can never be blamed on a later
    /// call and the reason reaches the caller instead of being lost.
    public static func drain() -> [String] {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            reasons.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return reasons
    }
}

/// The drained reasons as one string, or `fallback` when OpenSSL said nothing.
func drainOpenSSLErrors(fallback: String = "unknown OpenSSL error") -> String {
    let reasons = OpenSSLErrors.drain()
    return reasons.isEmpty ? fallback : reasons.joined(separator: "; ")
}
