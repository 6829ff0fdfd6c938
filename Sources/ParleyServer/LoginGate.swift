import NIOCore

/// One password check in flight per name: later logins for that name wait in arrival order (at
/// most `maxWaiting`) or are refused. Pure state: the caller holds it under a lock and performs
/// what each event returns.
struct LoginGate {
    /// What a login arriving for a name must do.
    enum Arrival: Equatable {
        /// No check is running for the name: this one runs now.
        case proceed
        /// Another check runs: wait until `leave` hands the turn to this ticket.
        case wait
        /// Too many already wait for this name.
        case refuse
    }

    /// Presence in `lines` means a check for that name is running; the array is who waits next.
    private var lines: [String: [UInt64]] = [:]
    let maxWaiting: Int

    init(maxWaiting: Int) {
        self.maxWaiting = max(0, maxWaiting)
    }

    mutating func arrive(_ name: String, ticket: UInt64) -> Arrival {
        guard var waiting = lines[name] else {
            lines[name] = []
            return .proceed
        }
        guard waiting.count < maxWaiting else { return .refuse }
        waiting.append(ticket)
        lines[name] = waiting
        return .wait
    }

    /// The running check for `name` ended: the ticket that runs next, if any.
    mutating func leave(_ name: String) -> UInt64? {
        guard var waiting = lines[name] else { return nil }
        guard !waiting.isEmpty else {
            lines[name] = nil
            return nil
        }
        let next = waiting.removeFirst()
        lines[name] = waiting
        return next
    }

    /// A waiting login gave up (its connection closed); true if it was waiting.
    mutating func cancel(_ name: String, ticket: UInt64) -> Bool {
        guard var waiting = lines[name], let index = waiting.firstIndex(of: ticket) else { return false }
        waiting.remove(at: index)
        lines[name] = waiting
        return true
    }

    /// Forgets everything (shutdown); the caller answers the waiters it holds.
    mutating func removeAll() { lines = [:] }

    /// Logins waiting (not running) for `name`.
    func waiting(for name: String) -> Int { lines[name]?.count ?? 0 }

    /// Names with a check running.
    var runningNames: Int { lines.count }
}

/// Failed logins per source address: after `policy.failures` in one window, that address is
/// refused for a delay that doubles each time it trips again (up to `policy.maxDelay`), so one
/// address can neither lock out many names nor keep one locked. The name lock is separate.
struct AddressBackoff {
    typealias Policy = AddressBackoffPolicy

    /// Whether an address may try a password now.
    enum Verdict: Equatable {
        case allowed
        case refused(retryAfter: TimeAmount)
    }

    private struct Entry {
        var failures = 0
        var windowStart: NIODeadline
        var trips = 0
        var blockedUntil: NIODeadline?
    }

    let policy: Policy
    private var entries: [String: Entry] = [:]

    init(policy: Policy) {
        self.policy = policy
    }

    func verdict(_ address: String, now: NIODeadline) -> Verdict {
        guard let until = entries[address]?.blockedUntil, now < until else { return .allowed }
        return .refused(retryAfter: until - now)
    }

    /// Counts one failed check; returns the verdict for the address's next attempt.
    @discardableResult
    mutating func recordFailure(_ address: String, now: NIODeadline) -> Verdict {
        var entry: Entry
        if let known = entries[address], !isQuiet(known, now: now) {
            entry = known
        } else {
            entries[address] = nil
            if entries.count >= policy.maxAddresses { pruneQuiet(now: now) }
            guard entries.count < policy.maxAddresses else { return .allowed }
            entry = Entry(windowStart: now)
        }
        if now - entry.windowStart >= policy.window {
            entry.failures = 0
            entry.windowStart = now
        }
        entry.failures += 1
        if entry.failures >= max(1, policy.failures) {
            entry.trips += 1
            let doubling = Int64(1) << Int64(min(entry.trips - 1, 32))
            let (grown, overflow) = policy.firstDelay.nanoseconds.multipliedReportingOverflow(by: doubling)
            entry.blockedUntil = now + .nanoseconds(overflow ? policy.maxDelay.nanoseconds : min(policy.maxDelay.nanoseconds, grown))
            entry.failures = 0
            entry.windowStart = now
        }
        entries[address] = entry
        return verdict(address, now: now)
    }

    /// Addresses remembered now (for tests and bounds).
    var trackedAddresses: Int { entries.count }

    /// Quiet: no failure in the last window and no refusal within a window of now; its trips are
    /// forgotten, so the delay starts small again for an address that stopped.
    private func isQuiet(_ entry: Entry, now: NIODeadline) -> Bool {
        let lastActive = max(entry.windowStart, entry.blockedUntil ?? entry.windowStart)
        return now - lastActive >= policy.window
    }

    private mutating func pruneQuiet(now: NIODeadline) {
        entries = entries.filter { !isQuiet($0.value, now: now) }
    }
}

/// Limits of the per-address login back-off (`ServerConfiguration.addressBackoff`).
public struct AddressBackoffPolicy: Sendable, Hashable {
    /// Failed password checks from one address within `window` that trip the back-off.
    public var failures: Int = 10
    /// How long failures are counted together.
    public var window: TimeAmount = .minutes(5)
    /// Refusal after the first trip; doubled for each further trip before the address goes quiet.
    public var firstDelay: TimeAmount = .seconds(30)
    /// The longest refusal.
    public var maxDelay: TimeAmount = .minutes(15)
    /// Addresses remembered at once; beyond it new ones are not tracked until old ones go quiet.
    public var maxAddresses: Int = 16_384

    public init() {}
}
