import ParleyProtocol

extension TestChatClient {
    /// The next chat message event (live or stored).
    public func nextMessage(timeout: Double = 5) async -> (from: String, text: String, delivery: Int64?)? {
        let message = await next(timeout: timeout) { if case .message = $0 { true } else { false } }
        guard case .message(let from, let text, let delivery, _)? = message else { return nil }
        return (from, text, delivery)
    }

    /// The next broadcast event.
    public func nextBroadcast(timeout: Double = 5) async -> (from: String, text: String)? {
        let message = await next(timeout: timeout) { if case .broadcast = $0 { true } else { false } }
        guard case .broadcast(let from, let text)? = message else { return nil }
        return (from, text)
    }

    /// Whether `user`'s presence event (going online or offline) arrives within `timeout` seconds.
    public func nextPresence(of user: String, online: Bool, timeout: Double = 5) async -> Bool {
        await next(timeout: timeout) { $0 == .presence(user: user, online: online) } != nil
    }
}
