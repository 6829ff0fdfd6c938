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

extension TestChatClient {
    /// The next chat message event (live or stored).
    func nextMessage(timeout: Double = 5) async -> (from: String, text: String, delivery: Int64?)? {
        let message = await next(timeout: timeout) { if case .message = $0 { true } else { false } }
        guard case .message(let from, let text, let delivery, _)? = message else { return nil }
        return (from, text, delivery)
    }

    func nextBroadcast(timeout: Double = 5) async -> (from: String, text: String)? {
        let message = await next(timeout: timeout) { if case .broadcast = $0 { true } else { false } }
        guard case .broadcast(let from, let text)? = message else { return nil }
        return (from, text)
    }

    func nextPresence(of user: String, online: Bool, timeout: Double = 5) async -> Bool {
        await next(timeout: timeout) { $0 == .presence(user: user, online: online) } != nil
    }
}

/// A clock the test moves by hand (login gate, back-off and connection state machine tests).
final class ManualClock: Sendable {
    private let current = NIOLockedValueBox(NIODeadline.uptimeNanoseconds(1_000_000_000))
    var now: NIODeadline { current.withLockedValue { $0 } }
    func advance(_ amount: TimeAmount) { current.withLockedValue { $0 = $0 + amount } }
}
