internal import COpenSSL

/// Cryptographically secure random bytes from OpenSSL's DRBG (`RAND_bytes`).
public enum SecureRandom {
    /// Returns `count` random bytes. Traps if the generator fails: continuing with weak or
    /// zeroed "random" bytes (salts, tokens) would be worse than stopping the process.
    public static func bytes(count: Int) -> [UInt8] {
        do {
            return try checkedBytes(count: count)
        } catch {
            fatalError("SecureRandom: \(error)")
        }
    }

    /// Lowercase hex of `bytes` random bytes (the string is twice as long).
    public static func hex(bytes: Int) -> String {
        Hex.encode(Self.bytes(count: bytes))
    }

    /// Throwing variant for callers that already report errors (the password hasher).
    static func checkedBytes(count: Int) throws(CryptoError) -> [UInt8] {
        precondition(count >= 0, "negative byte count")
        if count == 0 { return [] }
        var out = [UInt8](repeating: 0, count: count)
        ERR_clear_error()
        let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32(count)) }
        guard ok == 1 else { throw .randomFailed(reason: drainOpenSSLErrors()) }
        return out
    }
}

/// Compares two byte arrays in time independent of their contents (`CRYPTO_memcmp`).
/// Only whether the lengths differ can leak, which is fine for fixed-length digests and MACs.
public func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    guard lhs.count == rhs.count else { return false }
    if lhs.isEmpty { return true }
    return lhs.withUnsafeBytes { a in
        rhs.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, a.count) == 0 }
    }
}

/// SHA-256 through OpenSSL's EVP digest API.
public enum SHA256 {
    /// Digest length in bytes.
    public static let byteCount = 32

    /// The 32-byte SHA-256 digest of `data`.
    public static func digest(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: byteCount)
        var length: UInt32 = 0
        ERR_clear_error()
        let ok = data.withUnsafeBytes { input in
            out.withUnsafeMutableBufferPointer { output in
                EVP_Digest(input.baseAddress, input.count, output.baseAddress, &length, EVP_sha256(), nil)
            }
        }
        // EVP_Digest only fails on allocation failure or a broken provider: nothing a caller can do.
        guard ok == 1, length == UInt32(byteCount) else {
            fatalError("SHA256: \(drainOpenSSLErrors())")
        }
        return out
    }

    /// The SHA-256 digest of the UTF-8 bytes of `string`.
    public static func digest(_ string: String) -> [UInt8] {
        digest(Array(string.utf8))
    }

    /// Lowercase hex of the SHA-256 digest of `data`.
    public static func hexDigest(_ data: [UInt8]) -> String {
        Hex.encode(digest(data))
    }
}

/// Lowercase hexadecimal encoding and strict decoding.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    /// Lowercase hex of `bytes`.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bytes of a hex string (either case), or nil if it has an odd length or a non-hex character.
    public static func decode(_ hex: String) -> [UInt8]? {
        decode(utf8: hex.utf8)
    }

    /// The same over raw UTF-8 bytes, for input that should never become a `String` (a secret).
    public static func decode<Digits: Collection<UInt8>>(utf8 chars: Digits) -> [UInt8]? {
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        var index = chars.startIndex
        while index != chars.endIndex {
            let next = chars.index(after: index)
            guard let high = nibble(chars[index]), let low = nibble(chars[next]) else { return nil }
            out.append(high << 4 | low)
            index = chars.index(after: next)
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
