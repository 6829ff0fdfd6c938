internal import COpenSSL

#if canImport(Glibc)
import Glibc
#endif

// TLS 1.3 record protection (RFC 8446 §5.2, §7.3) on OpenSSL's EVP AEADs, for the server's
// connections once OpenSSL's handshake is done (see TLS13Records). No NIO here, so the fuzzer
// can build it with nothing but OpenSSL.

/// The three TLS 1.3 suites Parley's policy allows, by their IANA code.
enum RecordSuite: UInt16, Sendable {
    case aes128GCM = 0x1301
    case aes256GCM = 0x1302
    case chacha20Poly1305 = 0x1303

    var keyLength: Int { self == .aes128GCM ? 16 : 32 }
    var hashLength: Int { self == .aes256GCM ? 48 : 32 }
    static let ivLength = 12
    static let tagLength = 16

    fileprivate var index: Int {
        switch self {
        case .aes128GCM: return 0
        case .aes256GCM: return 1
        case .chacha20Poly1305: return 2
        }
    }
}

/// Algorithms fetched once per process: fetched objects are immutable and shared by all threads
/// (a per-call implicit fetch costs a provider look-up each time).
private enum Algorithms {
    // Optional: a provider set without one of them (e.g. FIPS-only) makes the server keep
    // OpenSSL's record layer for that suite instead of failing.
    nonisolated(unsafe) static let ciphers: [OpaquePointer?] = [
        EVP_CIPHER_fetch(nil, "AES-128-GCM", nil),
        EVP_CIPHER_fetch(nil, "AES-256-GCM", nil),
        EVP_CIPHER_fetch(nil, "ChaCha20-Poly1305", nil),
    ]
    nonisolated(unsafe) static let hmac: OpaquePointer? = EVP_MAC_fetch(nil, "HMAC", nil)

    static func available(_ suite: RecordSuite) -> Bool { ciphers[suite.index] != nil && hmac != nil }
}

/// One EVP context per suite and direction per thread, re-keyed for each record. Keeping a
/// context per connection would cost ~1.1 KiB each way for every idle client; a re-key costs
/// ~0.25 µs per record, and records are per flush, not per message.
private final class ThreadContexts {
    var contexts = [OpaquePointer?](repeating: nil, count: 6)
    /// HMAC-SHA256 and HMAC-SHA384, re-keyed per use (a one-shot `HMAC()` fetches and sets up
    /// everything anew: three times the cost, four times per handshake).
    var macs = [OpaquePointer?](repeating: nil, count: 2)
    deinit {
        for context in contexts { EVP_CIPHER_CTX_free(context) }
        for mac in macs { EVP_MAC_CTX_free(mac) }
    }

    static func current() -> ThreadContexts {
        if let raw = pthread_getspecific(key) {
            return Unmanaged<ThreadContexts>.fromOpaque(raw).takeUnretainedValue()
        }
        let contexts = ThreadContexts()
        pthread_setspecific(key, Unmanaged.passRetained(contexts).toOpaque())
        return contexts
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key) { raw in
            if let raw { Unmanaged<ThreadContexts>.fromOpaque(raw).release() }
        }
        return key
    }()

    func mac(sha384: Bool) -> OpaquePointer {
        let slot = sha384 ? 1 : 0
        if let mac = macs[slot] { return mac }
        let mac = EVP_MAC_CTX_new(Algorithms.hmac!)!
        let digest = strdup(sha384 ? "SHA384" : "SHA256")
        defer { free(digest) }
        var params = [OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()]
        _ = EVP_MAC_CTX_set_params(mac, &params)
        macs[slot] = mac
        return mac
    }

    func context(_ suite: RecordSuite, encrypt: Bool) -> OpaquePointer {
        let slot = suite.index * 2 + (encrypt ? 0 : 1)
        if let context = contexts[slot] { return context }
        let context = EVP_CIPHER_CTX_new()!
        _ = EVP_CipherInit_ex2(context, Algorithms.ciphers[suite.index], nil, nil, encrypt ? 1 : 0, nil)
        contexts[slot] = context
        return context
    }
}

/// Keys for one direction of one connection: the traffic secret (kept for KeyUpdate), the
/// derived key and IV, and the record sequence number.
struct TrafficKeys {
    let suite: RecordSuite
    private(set) var secret: [UInt8]
    private(set) var key: [UInt8]
    private(set) var iv: [UInt8]
    private(set) var sequence: UInt64 = 0

    /// Nil when OpenSSL lacks the suite or fails to derive the keys (never encrypt under a key
    /// that was not derived).
    init?(suite: RecordSuite, secret: [UInt8]) {
        guard Algorithms.available(suite),
            let key = hkdfExpandLabel(suite: suite, secret: secret, label: "key", length: suite.keyLength),
            let iv = hkdfExpandLabel(suite: suite, secret: secret, label: "iv", length: RecordSuite.ivLength)
        else { return nil }
        self.suite = suite
        self.secret = secret
        self.key = key
        self.iv = iv
    }

    /// Moves to the next generation of keys (RFC 8446 §7.2, "traffic upd"); false if that failed.
    mutating func update() -> Bool {
        guard let nextSecret = hkdfExpandLabel(suite: suite, secret: secret, label: "traffic upd", length: suite.hashLength),
            let next = TrafficKeys(suite: suite, secret: nextSecret)
        else { return false }
        wipe()
        self = next
        return true
    }

    /// Overwrites the key material (best effort: Swift may have copied it before).
    mutating func wipe() {
        secret.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        key.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        iv.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
    }

    /// Runs `body` with the per-record nonce: the IV XOR the 64-bit sequence number, left-padded
    /// (§5.3), and the key, without a heap allocation per record.
    private func withNonceAndKey<R>(_ body: (UnsafeRawPointer, UnsafeRawPointer) -> R) -> R {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: RecordSuite.ivLength) { nonce in
            for i in 0..<RecordSuite.ivLength { nonce[i] = iv[i] }
            for i in 0..<8 { nonce[4 + i] ^= UInt8(truncatingIfNeeded: sequence >> (56 - 8 * UInt64(i))) }
            return key.withUnsafeBytes { key in body(UnsafeRawPointer(nonce.baseAddress!), key.baseAddress!) }
        }
    }

    /// Seals `content` and its inner content type behind `header` into `output`, which must
    /// hold `content.count + 1 + tagLength` bytes. Returns false on an OpenSSL failure.
    mutating func seal(
        header: UnsafeRawBufferPointer, content: UnsafeRawBufferPointer, type: UInt8,
        into output: UnsafeMutableRawBufferPointer
    ) -> Bool {
        let context = ThreadContexts.current().context(suite, encrypt: true)
        var length: Int32 = 0
        let ok = withNonceAndKey { nonce, key in
            EVP_EncryptInit_ex2(context, nil, key.assumingMemoryBound(to: UInt8.self),
                nonce.assumingMemoryBound(to: UInt8.self), nil) == 1
        }
        guard ok, EVP_EncryptUpdate(context, nil, &length, header.baseAddress, Int32(header.count)) == 1 else {
            return false
        }
        let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var offset = 0
        if content.count > 0 {
            guard EVP_EncryptUpdate(context, out, &length, content.baseAddress, Int32(content.count)) == 1 else {
                return false
            }
            offset = Int(length)
        }
        var typeByte = type
        guard EVP_EncryptUpdate(context, out + offset, &length, &typeByte, 1) == 1 else { return false }
        offset += Int(length)
        guard EVP_EncryptFinal_ex(context, out + offset, &length) == 1 else { return false }
        offset += Int(length)
        guard
            EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(RecordSuite.tagLength), out + offset) == 1
        else { return false }
        sequence &+= 1
        return true
    }

    /// Opens `ciphertext` (body then tag) authenticated with `header` into `output` (at least
    /// `ciphertext.count - tagLength` bytes). Returns the plaintext length, or nil when the
    /// record does not authenticate; the unverified plaintext is then wiped from `output`.
    mutating func open(
        header: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let bodyLength = ciphertext.count - RecordSuite.tagLength
        guard bodyLength >= 0 else { return nil }
        precondition(output.count >= bodyLength)
        let opened = decrypt(header: header, ciphertext: ciphertext, bodyLength: bodyLength, into: output)
        if opened == nil { OPENSSL_cleanse(output.baseAddress, bodyLength) }
        return opened
    }

    private mutating func decrypt(
        header: UnsafeRawBufferPointer, ciphertext: UnsafeRawBufferPointer, bodyLength: Int,
        into output: UnsafeMutableRawBufferPointer
    ) -> Int? {
        let context = ThreadContexts.current().context(suite, encrypt: false)
        var length: Int32 = 0
        var total = 0
        let ok = withNonceAndKey { nonce, key in
            EVP_DecryptInit_ex2(context, nil, key.assumingMemoryBound(to: UInt8.self),
                nonce.assumingMemoryBound(to: UInt8.self), nil) == 1
        }
        guard ok, EVP_DecryptUpdate(context, nil, &length, header.baseAddress, Int32(header.count)) == 1 else {
            return nil
        }
        if bodyLength > 0 {
            guard
                EVP_DecryptUpdate(
                    context, output.baseAddress?.assumingMemoryBound(to: UInt8.self), &length,
                    ciphertext.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(bodyLength)) == 1
            else { return nil }
            total = Int(length)
        }
        let tag = UnsafeMutableRawPointer(mutating: ciphertext.baseAddress! + bodyLength)
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(RecordSuite.tagLength), tag) == 1,
            EVP_DecryptFinal_ex(
                context, output.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + total }, &length) == 1
        else { return nil }
        sequence &+= 1
        return total + Int(length)
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context, for outputs no longer than the hash:
/// HKDF-Expand is then one HMAC over the label and the counter byte 1 (RFC 5869 §2.3).
func hkdfExpandLabel(suite: RecordSuite, secret: [UInt8], label: String, length: Int) -> [UInt8]? {
    precondition(length <= suite.hashLength)
    let fullLabel = Array("tls13 \(label)".utf8)
    var info: [UInt8] = [UInt8(length >> 8), UInt8(length & 0xff), UInt8(fullLabel.count)]
    info += fullLabel
    info += [0, 1]  // empty context, then HKDF's counter
    var out = [UInt8](repeating: 0, count: 64)
    var outLength = 0
    let mac = ThreadContexts.current().mac(sha384: suite == .aes256GCM)
    defer {
        out.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        // The keyed context would let the next secret be derived: leave it keyed with zeros.
        let zeros = [UInt8](repeating: 0, count: 32)
        _ = EVP_MAC_init(mac, zeros, zeros.count, nil)
    }
    guard EVP_MAC_init(mac, secret, secret.count, nil) == 1, EVP_MAC_update(mac, info, info.count) == 1,
        EVP_MAC_final(mac, &out, &outLength, out.count) == 1, outLength == suite.hashLength
    else { return nil }
    return Array(out[0..<length])
}
