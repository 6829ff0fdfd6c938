import NIOCore
import ParleyProtocol
import ParleyProtocolNIO

/// Where a connection reads the time; injected so the timing rules are tested without sleeping.
protocol ConnectionClock {
    var now: NIODeadline { get }
}

/// The event loop's clock (no storage: the state machine stays the same size with it).
struct SystemClock: ConnectionClock {
    var now: NIODeadline { .now() }
}

/// Why the server ends a session or closes a connection.
enum EndReason: Equatable, Sendable {
    /// The user sent `logout`.
    case loggedOut
    /// No request from the user within the idle timeout.
    case idle
    /// No successful login within the login timeout.
    case loginDeadline
    /// Too many malformed frames in a row; the last one had this code.
    case badFrames(ErrorCode)
    /// The client stopped reading and its backlog passed the limit.
    case slowConsumer
    /// The client kept sending commands after they were refused as `rate_limited`.
    case flooding
    /// After a logout, every stored message was acked or the wait for acks ran out.
    case acksSettled
    /// The peer closed the connection or it failed.
    case disconnected
    /// The server is stopping: no more work is started for this connection.
    case serverStopping
    /// The server operator logged the user out (admin socket `kick`).
    case kicked
    /// The server operator disabled the account (admin socket `disable`, or found disabled
    /// right after going online).
    case disabled
    /// Wrong old passwords given to `passwd` locked the name: the session ends with it.
    case accountLocked

    /// What the client is told in `loggedout`, if anything (wire values live in ParleyProtocol).
    var wireReason: LogoutReason? {
        switch self {
        case .loggedOut: .logout
        case .idle: .timeout
        case .slowConsumer: .slowConsumer
        case .kicked: .kicked
        case .disabled: .disabled
        case .accountLocked: .accountLocked
        case .flooding: .flooding
        case .loginDeadline, .badFrames, .acksSettled, .disconnected, .serverStopping: nil
        }
    }

    /// The `privatestopped` reason a private-session peer of `user` reads when this ends the session.
    func privateStopText(user: String) -> String {
        switch self {
        case .loggedOut, .accountLocked: "\(user) logged out"
        case .idle: "\(user) timed out"
        case .kicked, .disabled: "\(user) was logged out by the server operator"
        default: "\(user) lost the connection to the server"
        }
    }
}
