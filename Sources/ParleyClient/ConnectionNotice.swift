import ParleyProtocol

/// How the client reconnects after losing the server without a logout: bounded exponential
/// back-off with jitter, going round the listed servers.
public struct ReconnectPolicy: Sendable {
    /// The servers in the order given; after a loss the next one (round the list) is tried first.
    public var servers: [ServerEndpoint]
    /// Which of `servers` the session started on.
    public var current: Int
    /// The back-off before the first attempt; it doubles for each failed one, up to `maxDelay`.
    public var firstDelay: Duration = .milliseconds(500)
    public var maxDelay: Duration = .seconds(10)
    /// Attempts after one loss before the client gives up (exit 68); 0 never reconnects.
    public var maxAttempts: Int = 30
    /// Turns the nominal back-off into the one waited; by default a uniform pick in [d/2, d], so
    /// clients that lost the same server do not come back in step.
    public var jitter: @Sendable (Duration) -> Duration = ReconnectPolicy.halfJitter

    public init(servers: [ServerEndpoint], current: Int = 0) {
        self.servers = servers
        self.current = current
    }

    /// The nominal back-off before attempt `attempt` (1-based).
    public func backoff(before attempt: Int) -> Duration {
        var delay = firstDelay
        for _ in 1..<max(1, attempt) {
            delay *= 2
            if delay >= maxDelay { return maxDelay }
        }
        return min(delay, maxDelay)
    }

    public static let halfJitter: @Sendable (Duration) -> Duration = { delay in
        let nanos = delay.nanoseconds
        return .nanoseconds(nanos / 2 + Int64.random(in: 0...(nanos - nanos / 2)))
    }
}

/// What the client says about its server connection while it reconnects.
public enum ConnectionNotice: Sendable, Hashable {
    /// Attempt `attempt` goes to `server` after `delay`; `after` says what happened before it
    /// (nil on the first attempt: the connection was just lost).
    case reconnecting(to: ServerEndpoint, attempt: Int, delay: Duration, after: String?)
    case reconnected(to: ServerEndpoint, username: String)
    /// Every attempt failed; the session ends.
    case gaveUp(attempts: Int)
    /// A command typed while no server is connected; it was not sent.
    case notConnected(command: String)
    /// The connection was lost before the server answered `command`; it is not sent again.
    case requestLost(command: String)

    public var human: [String] {
        switch self {
        case .reconnecting(let server, _, _, nil): ["Connection lost; reconnecting to \(server)..."]
        case .reconnecting(let server, let attempt, let delay, let why?):
            ["Could not reconnect (\(why)); trying \(server) in \(Self.seconds(delay)) (attempt \(attempt))..."]
        case .reconnected(let server, let username): ["Reconnected to \(server) as \(username)"]
        case .gaveUp(let attempts): ["Error. Could not reconnect after \(attempts) attempts"]
        case .notConnected(let command): ["Error. Not connected to a server (reconnecting): '\(command)' was not sent"]
        case .requestLost("passwd"):
            ["Error. The connection was lost before the server answered 'passwd': your password may or may not have changed"]
        case .requestLost(let command):
            ["Error. The connection was lost before the server answered '\(command)'; it was not sent again"]
        }
    }

    public var json: JSONValue {
        switch self {
        case .reconnecting(let server, let attempt, let delay, let why):
            var o: [String: JSONValue] = [
                "event": .string("reconnecting"), "server": .string(server.description), "attempt": .integer(Int64(attempt)),
                "delay_ms": .integer(delay.nanoseconds / 1_000_000),
            ]
            if let why { o["reason"] = .string(why) }
            return .object(o)
        case .reconnected(let server, let username):
            return .object(["event": .string("reconnected"), "server": .string(server.description), "username": .string(username)])
        case .gaveUp, .notConnected, .requestLost:
            var o: [String: JSONValue] = ["event": .string("error"), "message": .string(human[0])]
            switch self {
            case .notConnected(let command):
                o["code"] = .string("not_connected")
                o["command"] = .string(command)
            case .requestLost(let command):
                o["code"] = .string("connection_lost")
                o["command"] = .string(command)
            default:
                o["code"] = .string("connection_lost")
            }
            return .object(o)
        }
    }

    private static func seconds(_ delay: Duration) -> String {
        let tenths = (delay.nanoseconds + 50_000_000) / 100_000_000
        return "\(tenths / 10).\(tenths % 10) s"
    }
}
