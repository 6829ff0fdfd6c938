internal import COpenSSL
import ParleyCrypto
internal import CParleyShims

#if canImport(Glibc)
import Glibc
#endif

// OpenSSL's C callbacks and the per-connection object they reach through SSL_get_app_data.

/// Per-connection data OpenSSL's C callbacks reach through `SSL_get_app_data`: the pinned key
/// (private sessions) and the application traffic secrets (server connections that hand the
/// record layer over to `TLS13Records`).
final class ConnectionHooks {
    let pin: [UInt8]?
    var clientTrafficSecret: [UInt8]?
    var serverTrafficSecret: [UInt8]?
    init(pin: [UInt8]?) { self.pin = pin }

    func wipe() {
        clientTrafficSecret?.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        serverTrafficSecret?.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
        clientTrafficSecret = nil
        serverTrafficSecret = nil
    }
}

/// Trusts exactly one public key: the leaf's SPKI SHA-256 must equal the pin (constant-time compare).
let pinningVerifyCallback: parley_verify_fn = { _, store in
    guard let store, let ssl = parley_X509_STORE_CTX_get_ssl(store),
        let raw = parley_SSL_get_app_data(ssl),
        let pin = Unmanaged<ConnectionHooks>.fromOpaque(raw).takeUnretainedValue().pin
    else { return 0 }
    // A self-signed peer certificate fails CA checks by design; only the leaf's key matters.
    if X509_STORE_CTX_get_error_depth(store) != 0 { return 1 }
    let presented = spkiFingerprint(ofKey: X509_get0_pubkey(X509_STORE_CTX_get_current_cert(store)))
    guard presented.count == pin.count, !presented.isEmpty else { return 0 }
    let same = CRYPTO_memcmp(presented, pin, presented.count) == 0
    if same { X509_STORE_CTX_set_error(store, X509_V_OK) }
    return same ? 1 : 0
}

/// Receives the TLS 1.3 application traffic secrets as OpenSSL derives them (the key-log hook is
/// OpenSSL's only public way to them). They are kept in memory only, never written anywhere.
let trafficSecretCallback: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { ssl, line in
    guard let ssl, let line, let raw = parley_SSL_get_app_data(ssl) else { return }
    let hooks = Unmanaged<ConnectionHooks>.fromOpaque(raw).takeUnretainedValue()
    // "LABEL <client random hex> <secret hex>"
    let length = strlen(line)
    let bytes = UnsafeRawBufferPointer(start: line, count: length)
    guard let firstSpace = bytes.firstIndex(of: 0x20), let lastSpace = bytes.lastIndex(of: 0x20),
        lastSpace > firstSpace
    else { return }
    // OpenSSL logs five secrets per handshake; only the two application traffic secrets are kept.
    let label = UnsafeRawBufferPointer(rebasing: bytes[0..<firstSpace])
    let isClient = label.elementsEqual("CLIENT_TRAFFIC_SECRET_0".utf8)
    guard isClient || label.elementsEqual("SERVER_TRAFFIC_SECRET_0".utf8),
        case let hex = UnsafeRawBufferPointer(rebasing: bytes[(lastSpace + 1)...]), hex.count <= 128,
        let secret = Hex.decode(utf8: hex)
    else { return }
    if isClient {
        hooks.clientTrafficSecret = secret
    } else {
        hooks.serverTrafficSecret = secret
    }
}
