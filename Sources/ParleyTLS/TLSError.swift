import ParleyCrypto

/// Everything that can go wrong in the TLS layer, with OpenSSL's own reason strings where it gave any.
public enum TLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A context could not be built (bad file, bad key, unsupported setting).
    case configuration(String)
    /// The private key file is readable by group or others; the server refuses to use it.
    case insecureKeyPermissions(path: String, mode: UInt32)
    /// The peer's certificate did not verify (unknown CA, expired, wrong host name, wrong pin).
    case certificateVerificationFailed(String)
    /// The handshake failed for another reason (no shared suite, protocol version, alert from the peer).
    case handshakeFailed([String])
    /// The handshake did not finish within the configured time.
    case handshakeTimeout
    /// The first bytes received were not a TLS record: a plaintext client on the TLS port.
    case notTLS
    /// The peer closed the TCP connection without sending close_notify.
    case uncleanShutdown
    /// A protocol error after the handshake (bad record, decryption failure).
    case protocolFailure([String])
    /// The connection was closed before the handshake completed.
    case closedDuringHandshake

    public var description: String {
        switch self {
        case .configuration(let why): return "TLS configuration error: \(why)"
        case .insecureKeyPermissions(let path, let mode):
            return "refusing to use private key \(path): its mode is \(String(mode, radix: 8)), "
                + "readable by group or others; run: chmod 600 \(path)"
        case .certificateVerificationFailed(let why): return "certificate verification failed: \(why)"
        case .handshakeFailed(let reasons): return "TLS handshake failed: \(reasons.joined(separator: "; "))"
        case .handshakeTimeout: return "TLS handshake timed out"
        case .notTLS: return "peer did not speak TLS (plaintext on a TLS port?)"
        case .uncleanShutdown: return "peer closed the connection without close_notify"
        case .protocolFailure(let reasons): return "TLS protocol failure: \(reasons.joined(separator: "; "))"
        case .closedDuringHandshake: return "connection closed during the TLS handshake"
        }
    }
}

/// The error queue as TLS errors want it (see `ParleyCrypto.OpenSSLErrors`).
enum OpenSSLErrorQueue {
    static func drain() -> [String] { OpenSSLErrors.drain() }

    /// The reasons, or a fallback naming the failed call.
    static func describe(_ call: String) -> String {
        let reasons = drain()
        return reasons.isEmpty ? "\(call) failed" : "\(call): \(reasons.joined(separator: "; "))"
    }
}
