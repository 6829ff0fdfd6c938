internal import COpenSSL
import ParleyCrypto
internal import CParleyShims

#if canImport(Glibc)
import Glibc
#endif

// OpenSSL's verify callback for private sessions and the pinned key it reaches.

/// The one public key a private-session peer must present, reached by the verify callback
/// through `SSL_get_app_data`.
final class PinnedKey {
    let fingerprint: [UInt8]
    init(_ fingerprint: [UInt8]) { self.fingerprint = fingerprint }
}

/// Trusts exactly one public key: the leaf's SPKI SHA-256 must equal the pin (constant-time compare).
let pinningVerifyCallback: parley_verify_fn = { _, store in
    guard let store, let ssl = parley_X509_STORE_CTX_get_ssl(store),
        let raw = parley_SSL_get_app_data(ssl),
        case let pin = Unmanaged<PinnedKey>.fromOpaque(raw).takeUnretainedValue().fingerprint
    else { return 0 }
    // A self-signed peer certificate fails CA checks by design; only the leaf's key matters.
    if X509_STORE_CTX_get_error_depth(store) != 0 { return 1 }
    let presented = spkiFingerprint(ofKey: X509_get0_pubkey(X509_STORE_CTX_get_current_cert(store)))
    guard presented.count == pin.count, !presented.isEmpty else { return 0 }
    let same = CRYPTO_memcmp(presented, pin, presented.count) == 0
    if same { X509_STORE_CTX_set_error(store, X509_V_OK) }
    return same ? 1 : 0
}
