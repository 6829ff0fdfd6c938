import NIOConcurrencyHelpers
import NIOCore
import Testing
@testable import ParleyServer

@Suite("login gate and per-address back-off (state machines, test clock)")
struct LoginGateTests {
    @Test func oneCheckPerNameTheRestWaitInOrderBoundedAndCancellable() {
        var gate = LoginGate(maxWaiting: 2)
        #expect(gate.arrive("alice", ticket: 1) == .proceed)
        #expect(gate.arrive("alice", ticket: 2) == .wait)
        #expect(gate.arrive("alice", ticket: 3) == .wait)
        #expect(gate.arrive("alice", ticket: 4) == .refuse)
        #expect(gate.arrive("bob", ticket: 5) == .proceed, "other names are not held up")
        #expect(gate.leave("alice") == 2)
        let cancelled = gate.cancel("alice", ticket: 3)
        let again = gate.cancel("alice", ticket: 3)
        #expect(cancelled && !again)
        #expect(gate.waiting(for: "alice") == 0)
        #expect(gate.leave("alice") == nil)
        #expect(gate.runningNames == 1)
        #expect(gate.leave("bob") == nil)
        #expect(gate.runningNames == 0, "nothing is kept for idle names")
        #expect(gate.arrive("alice", ticket: 6) == .proceed)
    }

    @Test func kFailuresInAWindowRefuseTheAddressForADelayThatDoublesUpToTheCap() {
        var policy = AddressBackoffPolicy()
        policy.failures = 3
        policy.window = .seconds(60)
        policy.firstDelay = .seconds(10)
        policy.maxDelay = .seconds(25)
        var backoff = AddressBackoff(policy: policy)
        let clock = ManualClock()
        #expect(backoff.recordFailure("10.0.0.1", now: clock.now) == .allowed)
        #expect(backoff.recordFailure("10.0.0.1", now: clock.now) == .allowed)
        #expect(backoff.recordFailure("10.0.0.1", now: clock.now) == .refused(retryAfter: .seconds(10)))
        #expect(backoff.verdict("10.0.0.2", now: clock.now) == .allowed, "other addresses are untouched")
        clock.advance(.seconds(9))
        #expect(backoff.verdict("10.0.0.1", now: clock.now) == .refused(retryAfter: .seconds(1)))
        clock.advance(.seconds(1))
        #expect(backoff.verdict("10.0.0.1", now: clock.now) == .allowed)
        for _ in 0..<2 { backoff.recordFailure("10.0.0.1", now: clock.now) }
        #expect(backoff.recordFailure("10.0.0.1", now: clock.now) == .refused(retryAfter: .seconds(20)))
        clock.advance(.seconds(20))
        for _ in 0..<2 { backoff.recordFailure("10.0.0.1", now: clock.now) }
        #expect(backoff.recordFailure("10.0.0.1", now: clock.now) == .refused(retryAfter: .seconds(25)), "capped")
        // Quiet for a window after the refusal ends: the trips are forgotten and it starts small again.
        clock.advance(.seconds(25 + 60))
        #expect(backoff.verdict("10.0.0.1", now: clock.now) == .allowed)
        for _ in 0..<2 { backoff.recordFailure("10.0.0.1", now: clock.now) }
        #expect(backoff.recordFailure("10.0.0.1", now: clock.now) == .refused(retryAfter: .seconds(10)))
    }

    @Test func failuresSpreadOverMoreThanAWindowDoNotTripAndTheTableIsBounded() {
        var policy = AddressBackoffPolicy()
        policy.failures = 3
        policy.window = .seconds(60)
        policy.maxAddresses = 2
        var backoff = AddressBackoff(policy: policy)
        let clock = ManualClock()
        for _ in 0..<6 {
            #expect(backoff.recordFailure("10.0.0.1", now: clock.now) == .allowed)
            clock.advance(.seconds(31))
        }
        backoff.recordFailure("10.0.0.2", now: clock.now)
        backoff.recordFailure("10.0.0.3", now: clock.now)
        #expect(backoff.trackedAddresses == 2)
        for _ in 0..<5 { #expect(backoff.recordFailure("10.0.0.4", now: clock.now) == .allowed, "table full: not tracked") }
        #expect(backoff.trackedAddresses == 2)
        clock.advance(.seconds(61))
        backoff.recordFailure("10.0.0.4", now: clock.now)
        #expect(backoff.trackedAddresses == 1, "quiet addresses are dropped to make room")
    }

    @Test func aWaitingLoginIsAdmittedInTurnAndACancelledOneLeavesNothing() async throws {
        let clock = ManualClock()
        var policy = AddressBackoffPolicy()
        policy.failures = 2
        let admission = LoginAdmission(maxWaitingPerName: 4, backoff: policy, clock: { clock.now })
        #expect(await admission.enter("alice") == .admitted)
        let second = Task { await admission.enter("alice") }
        let third = Task { await admission.enter("alice") }
        #expect(try await waitUntil { admission.waiting == 2 })
        second.cancel()
        #expect(await second.value == .cancelled)
        #expect(admission.waiting == 1)
        admission.leave("alice")
        #expect(await third.value == .admitted, "the turn skips the cancelled login")
        admission.leave("alice")
        #expect(admission.waiting == 0 && admission.runningNames == 0)

        admission.recordFailure(from: "10.0.0.1")
        admission.recordFailure(from: "10.0.0.1")
        #expect(admission.verdict(for: "10.0.0.1") == .refused(retryAfter: policy.firstDelay))
        clock.advance(policy.firstDelay)
        #expect(admission.verdict(for: "10.0.0.1") == .allowed)

        // Shutdown answers whoever waits.
        #expect(await admission.enter("bob") == .admitted)
        let waiter = Task { await admission.enter("bob") }
        #expect(try await waitUntil { admission.waiting == 1 })
        admission.close()
        #expect(await waiter.value == .closed)
        #expect(await admission.enter("carol") == .closed)
    }

    @Test func ipv6PeersShareTheirSlash64AndMappedIPv4CountsAsIPv4() throws {
        let a = LoginAdmission.addressKey(try SocketAddress(ipAddress: "2001:db8:1:2:aaaa::1", port: 1))
        let b = LoginAdmission.addressKey(try SocketAddress(ipAddress: "2001:db8:1:2:bbbb::7", port: 2))
        let c = LoginAdmission.addressKey(try SocketAddress(ipAddress: "2001:db8:1:3::1", port: 1))
        #expect(a == "2001:db8:1:2::/64" && a == b && a != c)
        #expect(LoginAdmission.addressKey(try SocketAddress(ipAddress: "::ffff:192.0.2.7", port: 1)) == "192.0.2.7")
        #expect(LoginAdmission.addressKey(try SocketAddress(ipAddress: "127.0.0.2", port: 9)) == "127.0.0.2")
    }
}

/// Polls `condition` until it holds, for at most `timeout` seconds (test code only).
func waitUntil(timeout: Double = 10, _ condition: () -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
    while !condition() {
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(5))
    }
    return true
}
