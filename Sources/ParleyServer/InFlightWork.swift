import NIOConcurrencyHelpers

/// Counts the server's tasks that are under way off the event loops, so a shutdown can wait for
/// them: a message being stored offline or a logout time is written before the store closes, and
/// no task completes onto an event loop that has already stopped.
final class InFlightWork: Sendable {
    private struct State {
        var count = 0
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    /// Counts one more task; false once the server is shutting down (the caller must not start it).
    func enter() -> Bool {
        state.withLockedValue { state in
            guard !state.closed else { return false }
            state.count += 1
            return true
        }
    }

    /// Whether shutdown has begun (outcomes that would start more work are dropped).
    var isClosed: Bool { state.withLockedValue { $0.closed } }

    /// Ends a task counted by `enter`.
    func leave() {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            state.count -= 1
            guard state.count == 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Runs `work` in a counted task that nobody waits for (bookkeeping writes).
    func detached(_ work: @escaping @Sendable () async -> Void) {
        guard enter() else { return }
        Task {
            await work()
            leave()
        }
    }

    /// Refuses new tasks, then returns once the counted ones have ended.
    func closeAndDrain() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let idle = state.withLockedValue { state -> Bool in
                state.closed = true
                guard state.count > 0 else { return true }
                state.waiters.append(waiter)
                return false
            }
            if idle { waiter.resume() }
        }
    }
}
