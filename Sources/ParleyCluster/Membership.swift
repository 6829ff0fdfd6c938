/// Where the membership reads the time; injected so that lease rules are tested without sleeping.
public protocol MembershipClock: Sendable {
    var now: ContinuousClock.Instant { get }
}

/// The process's monotonic clock.
public struct SystemMembershipClock: MembershipClock {
    public init() {}
    public var now: ContinuousClock.Instant { .now }
}

/// One node's membership of the cluster, without I/O: when to connect, join, renew its lease, and
/// when to give up its users because its lease may have run out. The bus feeds it its ticks and
/// the outcomes of what it asked for and carries out the actions it returns.
///
/// The lease is counted from when a renewal was *sent*, on this node's clock, so this node's idea
/// of its lease always ends before the database's (which counts from when the renewal arrived): a
/// node cut off from the database drops its users before any other node may remove them and let
/// them log in elsewhere, so nobody is logged in twice.
public struct Membership<Clock: MembershipClock>: Sendable {
    /// Where the node is with the database.
    public enum Phase: Equatable, Sendable {
        /// No connection; the next tick tries again.
        case down
        /// Opening the connections.
        case connecting
        /// Connected: registering the node with a fresh lease, listening, catching up.
        case joining
        /// In the cluster: renewing its lease every `renewalInterval`.
        case member
    }

    /// What the bus must do.
    public enum Action: Equatable, Sendable {
        /// Open the control and listening connections.
        case connect
        /// Register the node with a fresh lease, hand back stale claims of this node, listen, catch up.
        case join
        /// Extend the lease (and remove nodes whose lease ran out).
        case renew
        /// This node's lease may have run out: log its users out, release nothing more (others may
        /// have removed them already), and refuse logins until it is a member again.
        case dropLocalUsers
    }

    public let lease: Duration
    public var renewalInterval: Duration { lease / 3 }
    public private(set) var phase: Phase = .down
    private let clock: Clock
    /// When the last successful join or renewal was sent: the lease holds until `validFrom + lease`.
    private var validFrom: ContinuousClock.Instant?
    /// The wait before the next early reconnect (doubling from `firstRetry` up to `maxRetry`).
    private var retryDelay: Duration?
    /// When the join or renewal in flight was sent.
    private var inFlight: ContinuousClock.Instant?

    public init(clock: Clock, lease: Duration) {
        precondition(lease > .zero, "a lease must be positive")
        self.clock = clock
        self.lease = lease
    }

    /// Whether this node may let users log in now: a member whose lease holds.
    public var acceptsLogins: Bool {
        guard phase == .member, let validFrom else { return false }
        return clock.now < validFrom + lease
    }

    /// Whether this node has users the cluster counts as its own (dropped when the lease may have ended).
    public var holdsLease: Bool { validFrom != nil }

    /// The node starts.
    public mutating func start() -> [Action] {
        guard phase == .down else { return [] }
        phase = .connecting
        return [.connect]
    }

    /// Periodic, every `renewalInterval`: retries, renewals and the local end of the lease.
    public mutating func tick() -> [Action] {
        var actions = expireIfDue()
        switch phase {
        case .down:
            phase = .connecting
            actions.append(.connect)
        case .member where inFlight == nil:
            inFlight = clock.now
            actions.append(.renew)
        case .connecting, .joining, .member:
            break
        }
        return actions
    }

    /// Both connections are open.
    public mutating func connected() -> [Action] {
        guard phase == .connecting else { return [] }
        phase = .joining
        inFlight = clock.now
        return [.join]
    }

    /// Opening failed (the next tick retries).
    public mutating func connectFailed() -> [Action] {
        guard phase == .connecting else { return [] }
        phase = .down
        return expireIfDue()
    }

    /// Reconnects sooner than the next tick after a failure (a database restart is over in
    /// moments; logins are refused until the node has rejoined): how long to wait, doubling
    /// after each failure up to a second (or the renewal interval, if shorter).
    public mutating func nextRetryDelay() -> Duration {
        let cap = min(Self.maxRetry, renewalInterval)
        let delay = min(retryDelay.map { $0 * 2 } ?? Self.firstRetry, cap)
        retryDelay = delay
        return delay
    }

    /// The early retry's time has come: connect if still down.
    public mutating func retry() -> [Action] {
        guard phase == .down else { return [] }
        phase = .connecting
        return [.connect]
    }

    static var firstRetry: Duration { .milliseconds(100) }
    static var maxRetry: Duration { .seconds(1) }

    /// The join went through (node row, reconciliation, listening and catch-up).
    public mutating func joined() -> [Action] {
        guard phase == .joining, let sent = inFlight else { return [] }
        retryDelay = nil
        phase = .member
        validFrom = sent
        inFlight = nil
        return []
    }

    /// The renewal went through: the node row was still there.
    public mutating func renewed() -> [Action] {
        guard phase == .member, let sent = inFlight else { return [] }
        validFrom = sent
        inFlight = nil
        return expireIfDue()
    }

    /// The renewal found no node row: another node decided this one was dead and removed its users.
    public mutating func evicted() -> [Action] {
        guard phase == .member else { return [] }
        validFrom = nil
        phase = .joining
        inFlight = clock.now
        return [.dropLocalUsers, .join]
    }

    /// A connection failed or a join/renewal could not be sent or answered.
    public mutating func connectionLost() -> [Action] {
        guard phase != .down else { return [] }
        phase = .down
        inFlight = nil
        return expireIfDue()
    }

    /// Gives the users up once the lease may have ended, whatever else is going on.
    private mutating func expireIfDue() -> [Action] {
        guard let validFrom, clock.now >= validFrom + lease else { return [] }
        self.validFrom = nil
        return [.dropLocalUsers]
    }
}
