import NIOCore

/// One token bucket per source address, forgetting addresses whose bucket has refilled, so the
/// table stays as small as the addresses seen within one refill period. Pure state with the time
/// passed in; its owner holds it under a lock.
struct AddressBuckets {
    private(set) var capacity: Double
    private(set) var perSecond: Double
    private var buckets: [String: TokenBucket] = [:]
    /// The table is swept when it grows past this; then set to twice what survived (amortised).
    private var sweepAt = AddressBuckets.minimumSweep
    private static let minimumSweep = 1024

    init(capacity: Int, per period: TimeAmount) {
        self.capacity = Double(max(1, capacity))
        self.perSecond = self.capacity / max(1e-9, Double(period.nanoseconds) / 1_000_000_000)
    }

    /// Takes one token for `address`; false when its bucket is empty.
    mutating func take(_ address: String, now: NIODeadline) -> Bool {
        if buckets.count >= sweepAt { sweep(now: now) }
        var bucket = buckets[address] ?? TokenBucket(capacity: capacity, perSecond: perSecond, now: now)
        let taken = bucket.take(now: now)
        buckets[address] = bucket
        return taken
    }

    /// New capacity and period (a reload): every address starts again with a full bucket.
    mutating func update(capacity: Int, per period: TimeAmount) {
        self = AddressBuckets(capacity: capacity, per: period)
    }

    /// Addresses remembered now (tests check the table stays bounded).
    var count: Int { buckets.count }

    mutating func sweep(now: NIODeadline) {
        buckets = buckets.filter { !$0.value.isFull(now: now) }
        sweepAt = max(Self.minimumSweep, buckets.count * 2)
    }
}

/// Open connections and new connections per minute, per source address. Pure state; the
/// `ConnectionLimiter` holds it under its lock.
struct ConnectionTable {
    /// The answer at accept.
    enum Verdict: Equatable {
        case admitted
        /// The address already has `maxConnectionsPerAddress` open.
        case tooManyOpen
        /// The address opened `maxNewConnectionsPerMinute` within the last minute.
        case tooManyNew
    }

    private(set) var maxOpen: Int
    private var open: [String: Int] = [:]
    private var recent: AddressBuckets

    init(limits: ServerLimits) {
        self.maxOpen = limits.maxConnectionsPerAddress
        self.recent = AddressBuckets(capacity: limits.maxNewConnectionsPerMinute, per: .seconds(60))
    }

    /// A connection from `address` was accepted; counted open only when admitted.
    mutating func opened(_ address: String, now: NIODeadline) -> Verdict {
        let current = open[address, default: 0]
        // The open count is checked first: a refused connection must not spend the address's
        // budget of new ones.
        guard current < maxOpen else { return .tooManyOpen }
        guard recent.take(address, now: now) else { return .tooManyNew }
        open[address] = current + 1
        return .admitted
    }

    /// An admitted connection from `address` closed.
    mutating func closed(_ address: String) {
        guard let current = open[address] else { return }
        open[address] = current > 1 ? current - 1 : nil
    }

    mutating func update(_ limits: ServerLimits) {
        maxOpen = limits.maxConnectionsPerAddress
        recent.update(capacity: limits.maxNewConnectionsPerMinute, per: .seconds(60))
    }

    /// Connections open from `address` now.
    func openCount(_ address: String) -> Int { open[address, default: 0] }
    /// Addresses with a connection open.
    var addressesOpen: Int { open.count }
    /// Addresses remembered for the per-minute budget.
    var addressesRemembered: Int { recent.count }
}
