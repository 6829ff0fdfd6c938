import NIOConcurrencyHelpers
import NIOCore
import ParleyProtocol
import ParleyTestSupport
import Testing

extension Reply {
    /// The error code, or nil for an ok reply.
    var code: ErrorCode? {
        if case .error(let code, _) = outcome { return code }
        return nil
    }
    var isOK: Bool { code == nil }
    var users: [String]? {
        if case .ok(.users(let users)) = outcome { return users }
        return nil
    }
    var errorMessage: String? {
        if case .error(_, let message) = outcome { return message }
        return nil
    }
}


/// A clock the test moves by hand (login gate, back-off and connection state machine tests).
final class ManualClock: Sendable {
    private let current = NIOLockedValueBox(NIODeadline.uptimeNanoseconds(1_000_000_000))
    var now: NIODeadline { current.withLockedValue { $0 } }
    func advance(_ amount: TimeAmount) { current.withLockedValue { $0 = $0 + amount } }
}
