import NIOCore

/// Every abuse limit in one value, so an operator (or a config reload) changes them together.
/// Each refusal has its own typed answer; none exempts an address, loopback included.
public struct ServerLimits: Sendable, Equatable {
    /// Connections open at once from one source address (IPv6: one /64); more are closed at accept.
    public var maxConnectionsPerAddress: Int = 16
    /// New connections one source address may open per minute (a bucket of this many, refilled
    /// evenly over the minute); more are closed at accept.
    public var maxNewConnectionsPerMinute: Int = 60
    /// Commands one connection may send per second, on average (a token bucket).
    public var commandsPerSecond: Double = 10
    /// Commands one connection may send at once above the average (the bucket's size).
    public var commandBurst: Int = 30
    /// Commands refused as `rate_limited` within `floodWindow` after which the user is logged
    /// out (`flooding`): a client that ignores the refusals.
    public var floodRefusals: Int = 20
    /// The window `floodRefusals` are counted in.
    public var floodWindow: TimeAmount = .seconds(10)
    /// Offline messages kept for one recipient; more are refused (`recipient_queue_full`).
    public var maxQueuedPerRecipient: Int = 1000
    /// Accounts one source address may register per hour (a bucket refilled over the hour).
    public var maxRegistrationsPerAddressPerHour: Int = 10

    public init() {}

    /// Limits high enough for load tests and benchmarks that open thousands of connections and
    /// send thousands of commands from 127.0.0.1. Set explicitly by those that need it.
    public static var loadTesting: ServerLimits {
        var limits = ServerLimits()
        limits.maxConnectionsPerAddress = 1_000_000
        limits.maxNewConnectionsPerMinute = 100_000_000
        limits.commandsPerSecond = 100_000_000
        limits.commandBurst = 100_000_000
        limits.maxRegistrationsPerAddressPerHour = 100_000_000
        return limits
    }

    /// The command bucket and flood rule one connection starts with.
    var commandRate: CommandRate {
        CommandRate(perSecond: commandsPerSecond, burst: commandBurst, floodRefusals: floodRefusals, floodWindow: floodWindow)
    }
}

/// The per-connection command limit, as the state machine applies it.
struct CommandRate: Equatable {
    var perSecond: Double
    var burst: Int
    var floodRefusals: Int
    var floodWindow: TimeAmount
}

/// A token bucket with the time passed in: `capacity` tokens, refilled at `perSecond`.
/// Starts full. Pure value, so it is tested by moving time by hand.
struct TokenBucket: Equatable {
    let capacity: Double
    let perSecond: Double
    private(set) var tokens: Double
    private var updated: NIODeadline

    init(capacity: Double, perSecond: Double, now: NIODeadline) {
        self.capacity = max(1, capacity)
        self.perSecond = max(0, perSecond)
        self.tokens = self.capacity
        self.updated = now
    }

    /// Takes one token if there is one.
    mutating func take(now: NIODeadline) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Whether the bucket would be full at `now` (an entry that may be forgotten).
    func isFull(now: NIODeadline) -> Bool {
        var copy = self
        copy.refill(now: now)
        return copy.tokens >= capacity
    }

    private mutating func refill(now: NIODeadline) {
        guard now > updated else { return }
        let seconds = Double((now - updated).nanoseconds) / 1_000_000_000
        tokens = min(capacity, tokens + seconds * perSecond)
        updated = now
    }
}
