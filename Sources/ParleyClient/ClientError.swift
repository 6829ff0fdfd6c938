import ParleyProtocol
import ParleyTLS

/// Why a connection to the server failed or ended unexpectedly.
public enum ClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// TCP connection could not be established (refused, unreachable, bad address).
    case connectFailed(String)
    /// The TLS layer failed; `.certificateVerificationFailed` means the server is not who it claims.
    case tls(TLSError)
    /// The server's first frame was not a `hello`, or a frame could not be understood at all.
    case protocolViolation(String)
    /// The server speaks an older protocol than this client.
    case unsupportedVersion(server: Int64)
    /// No `hello` (or no reply) arrived in time.
    case timedOut
    /// The connection closed (server went away, or after `close()`).
    case connectionClosed
    /// Events arrived faster than they were consumed and the bounded buffer filled up.
    case eventBufferOverflow
    /// The server refused the connection before TLS (e.g. `too_many_connections` from this address).
    case refused(ErrorCode)

    /// True when the failure is the server's certificate not verifying (fail closed).
    public var isCertificateFailure: Bool {
        if case .tls(.certificateVerificationFailed) = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .connectFailed(let why): "could not connect: \(why)"
        case .tls(let error): error.description
        case .protocolViolation(let why): "protocol violation: \(why)"
        case .unsupportedVersion(let v): "the server speaks protocol version \(v), this client needs \(Limits.protocolVersion)"
        case .timedOut: "the server did not answer in time"
        case .connectionClosed: "connection to the server lost"
        case .eventBufferOverflow: "too many unread events; connection closed"
        // The code's own words: the refusal line came before TLS, so its text is not trusted.
        case .refused(let code):
            "the server refused the connection: \(code.defaultMessage.hasPrefix("Error. ") ? String(code.defaultMessage.dropFirst(7)) : code.defaultMessage)"
        }
    }
}

/// The process exit statuses of the `parley` client (documented in docs/CLIENT.md).
public enum ExitStatus: Int32, Sendable, CaseIterable {
    /// Logged out, or input ended and the logout completed.
    case ok = 0
    /// Bad command-line arguments.
    case usage = 64
    /// Wrong password (input ended before a right one) or another login refusal.
    case badCredentials = 65
    /// The account is locked after too many failures.
    case accountLocked = 66
    /// The server logged us out for inactivity.
    case timedOut = 67
    /// The connection was lost or the server closed it (including shutdown).
    case connectionLost = 68
    /// The server's TLS certificate did not verify.
    case certificateFailed = 69
    /// Anything else (TLS configuration, protocol errors, unexpected failures).
    case otherError = 70
    /// The account is already logged in elsewhere.
    case alreadyOnline = 71
}
