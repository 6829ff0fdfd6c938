import NIOConcurrencyHelpers
import NIOCore

/// Decides which logins may check a password now: one check per name at a time (`LoginGate`)
/// and none from an address in back-off (`AddressBackoff`). Shared by every event loop, so the
/// state sits behind one lock; waiting logins are continuations resumed outside it.
final class LoginAdmission: Sendable {
    /// Answer to `enter`.
    enum Entry: Equatable {
        /// This login holds the name's turn; it must call `leave` when its check is settled.
        case admitted
        /// Too many logins already wait for this name.
        case busy
        /// The login's task was cancelled (its connection closed) while it waited.
        case cancelled
        /// The server is shutting down.
        case closed
    }

    private struct State {
        var gate: LoginGate
        var backoff: AddressBackoff
        /// Registrations per address per hour.
        var registrations: AddressBuckets
        var waiters: [UInt64: CheckedContinuation<Entry, Never>] = [:]
        var nextTicket: UInt64 = 0
        var closed = false
    }

    private let state: NIOLockedValueBox<State>
    private let clock: @Sendable () -> NIODeadline

    init(maxWaitingPerName: Int, backoff: AddressBackoffPolicy, registrationsPerHour: Int = ServerLimits().maxRegistrationsPerAddressPerHour,
         clock: @escaping @Sendable () -> NIODeadline = { .now() }) {
        self.state = NIOLockedValueBox(State(gate: LoginGate(maxWaiting: maxWaitingPerName),
                                             backoff: AddressBackoff(policy: backoff),
                                             registrations: AddressBuckets(capacity: registrationsPerHour, per: .hours(1))))
        self.clock = clock
    }

    /// Whether `address` may try a password now (nil: no address known, never refused).
    func verdict(for address: String?) -> AddressBackoff.Verdict {
        guard let address else { return .allowed }
        let now = clock()
        return state.withLockedValue { $0.backoff.verdict(address, now: now) }
    }

    /// Spends one of `address`'s registrations for this hour; false when none is left.
    func mayRegister(from address: String?) -> Bool {
        guard let address else { return true }
        let now = clock()
        return state.withLockedValue { $0.registrations.take(address, now: now) }
    }

    /// New registration budget (a reload): every address starts afresh.
    func updateRegistrations(perHour: Int) {
        state.withLockedValue { $0.registrations.update(capacity: perHour, per: .hours(1)) }
    }

    /// Counts a failed password check from `address`.
    func recordFailure(from address: String?) {
        guard let address else { return }
        let now = clock()
        state.withLockedValue { _ = $0.backoff.recordFailure(address, now: now) }
    }

    /// Waits for this login's turn at `name`. Cancelling the task while it waits removes it at
    /// once, so a closed connection leaves nothing queued.
    func enter(_ name: String) async -> Entry {
        let ticket = state.withLockedValue { s -> UInt64 in
            s.nextTicket += 1
            return s.nextTicket
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Entry, Never>) in
                // Checked under the lock: a cancel that lands after this check finds the waiter.
                let now: Entry? = state.withLockedValue { s in
                    if s.closed { return .closed }
                    if Task.isCancelled { return .cancelled }
                    switch s.gate.arrive(name, ticket: ticket) {
                    case .proceed: return .admitted
                    case .refuse: return .busy
                    case .wait:
                        s.waiters[ticket] = continuation
                        return nil
                    }
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            let waiter = state.withLockedValue { s -> CheckedContinuation<Entry, Never>? in
                guard let waiter = s.waiters.removeValue(forKey: ticket) else { return nil }
                _ = s.gate.cancel(name, ticket: ticket)
                return waiter
            }
            waiter?.resume(returning: .cancelled)
        }
    }

    /// Ends the admitted login's turn at `name`; the next waiter, if any, goes.
    func leave(_ name: String) {
        let next = state.withLockedValue { s -> CheckedContinuation<Entry, Never>? in
            // A ticket without a waiter was cancelled between the two; give the turn onwards.
            while let ticket = s.gate.leave(name) {
                if let waiter = s.waiters.removeValue(forKey: ticket) { return waiter }
            }
            return nil
        }
        next?.resume(returning: .admitted)
    }

    /// Answers every waiter `.closed` and refuses new ones.
    func close() {
        // Moved out whole (no copy under the lock), resumed after it.
        let waiters = state.withLockedValue { s -> [UInt64: CheckedContinuation<Entry, Never>] in
            s.closed = true
            s.gate.removeAll()
            defer { s.waiters = [:] }
            return s.waiters
        }
        for waiter in waiters.values { waiter.resume(returning: .closed) }
    }

    /// Logins waiting for a turn, over all names (tests check nothing is left behind).
    var waiting: Int { state.withLockedValue { $0.waiters.count } }
    /// Names with a check running.
    var runningNames: Int { state.withLockedValue { $0.gate.runningNames } }
}

extension LoginAdmission {
    /// The back-off key for a peer: the IPv4 address, or the /64 of an IPv6 one (one host usually
    /// holds a whole /64, so keying on full addresses would let it rotate freely).
    static func addressKey(_ address: SocketAddress?) -> String? {
        switch address {
        case .v4(let v4)?:
            return address?.ipAddress ?? "\(v4)"
        case .v6(let v6)?:
            let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
            if bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xff, bytes[11] == 0xff {
                return bytes[12..<16].map(String.init).joined(separator: ".")  // IPv4-mapped
            }
            let groups = stride(from: 0, to: 8, by: 2).map { String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16) }
            return groups.joined(separator: ":") + "::/64"
        default:
            return nil
        }
    }
}
