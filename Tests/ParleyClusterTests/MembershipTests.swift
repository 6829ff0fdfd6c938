import ParleyCluster
import Testing

/// A clock the test moves by hand.
final class TestClock: MembershipClock, @unchecked Sendable {
    // Only the test's own task touches it.
    private let base = ContinuousClock.now
    private var offset: Duration = .zero
    var now: ContinuousClock.Instant { base + offset }
    func advance(_ by: Duration) { offset += by }
}

private typealias Machine = Membership<TestClock>

/// A machine that has connected and joined at the clock's current time.
private func member(_ clock: TestClock, lease: Duration = .seconds(9)) -> Machine {
    var machine = Machine(clock: clock, lease: lease)
    #expect(machine.start() == [.connect])
    #expect(machine.connected() == [.join])
    #expect(machine.joined() == [])
    return machine
}

@Suite("cluster membership (lease state machine, test clock)")
struct MembershipTests {
    @Test func startConnectsThenJoinsAndOnlyAMemberAcceptsLogins() {
        let clock = TestClock()
        var machine = Machine(clock: clock, lease: .seconds(9))
        #expect(!machine.acceptsLogins)
        #expect(machine.start() == [.connect])
        #expect(machine.start() == [])
        #expect(machine.phase == .connecting)
        #expect(machine.connected() == [.join])
        #expect(!machine.acceptsLogins)
        #expect(machine.joined() == [])
        #expect(machine.phase == .member)
        #expect(machine.acceptsLogins)
        #expect(machine.renewalInterval == .seconds(3))
    }

    @Test func aMemberRenewsOnEachTickButNeverTwiceAtOnce() {
        let clock = TestClock()
        var machine = member(clock)
        clock.advance(.seconds(3))
        #expect(machine.tick() == [.renew])
        clock.advance(.seconds(3))
        #expect(machine.tick() == [], "the renewal sent 3 s ago is still in flight")
        #expect(machine.renewed() == [])
        clock.advance(.seconds(3))
        #expect(machine.tick() == [.renew])
        #expect(machine.acceptsLogins)
    }

    @Test func theLeaseCountsFromWhenTheRenewalWasSentNotAnswered() {
        let clock = TestClock()
        var machine = member(clock)
        clock.advance(.seconds(3))
        #expect(machine.tick() == [.renew])  // sent at 3 s
        clock.advance(.seconds(5))
        #expect(machine.renewed() == [])  // answered at 8 s: the lease holds until 3 + 9 = 12 s
        clock.advance(.seconds(3.9))
        #expect(machine.acceptsLogins)
        clock.advance(.milliseconds(200))
        #expect(!machine.acceptsLogins, "12.1 s: the database may count the lease from 3 s too")
    }

    @Test func aRenewalThatHangsPastTheLeaseDropsTheUsersOnce() {
        let clock = TestClock()
        var machine = member(clock)
        clock.advance(.seconds(3))
        #expect(machine.tick() == [.renew])
        clock.advance(.seconds(3))
        #expect(machine.tick() == [])
        clock.advance(.seconds(3))
        #expect(machine.tick() == [.dropLocalUsers], "9 s since the join: the lease may be over")
        #expect(!machine.acceptsLogins)
        clock.advance(.seconds(3))
        #expect(machine.tick() == [], "dropped once, not at every tick")
    }

    @Test func aLostConnectionKeepsUsersUntilTheLeaseEndsThenReconnectsAndRejoins() {
        let clock = TestClock()
        var machine = member(clock)
        clock.advance(.seconds(2))
        #expect(machine.connectionLost() == [])
        #expect(machine.phase == .down)
        #expect(!machine.acceptsLogins)
        #expect(machine.holdsLease, "users stay while the lease holds")
        clock.advance(.seconds(1))
        #expect(machine.tick() == [.connect])
        #expect(machine.connectFailed() == [])
        clock.advance(.seconds(3))
        #expect(machine.tick() == [.connect])
        clock.advance(.seconds(3))
        #expect(machine.connectFailed() == [.dropLocalUsers], "9 s after the join")
        #expect(!machine.holdsLease)
        clock.advance(.seconds(1))
        #expect(machine.tick() == [.connect])
        #expect(machine.connected() == [.join])
        #expect(machine.joined() == [])
        #expect(machine.acceptsLogins)
    }

    @Test func earlyRetriesBackOffToASecondConnectOnlyWhenDownAndResetAtTheJoin() {
        let clock = TestClock()
        var machine = member(clock, lease: .seconds(9))
        #expect(machine.connectionLost() == [])
        let delays = (0..<6).map { _ in machine.nextRetryDelay() }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
        #expect(machine.retry() == [.connect])
        #expect(machine.retry() == [], "already connecting")
        #expect(machine.tick() == [], "the tick does not connect twice either")
        #expect(machine.connected() == [.join])
        #expect(machine.retry() == [], "joining: nothing to retry")
        #expect(machine.joined() == [])
        #expect(machine.retry() == [], "a member does not reconnect")
        #expect(machine.connectionLost() == [])
        #expect(machine.nextRetryDelay() == .milliseconds(100), "the back-off starts again after a join")
        var short = Machine(clock: clock, lease: .seconds(1.5))
        _ = short.start()
        #expect((0..<5).map { _ in short.nextRetryDelay() }.last == .milliseconds(500), "capped by the renewal interval")
    }

    @Test func evictionDropsTheUsersAndRejoins() {
        let clock = TestClock()
        var machine = member(clock)
        clock.advance(.seconds(3))
        #expect(machine.tick() == [.renew])
        #expect(machine.evicted() == [.dropLocalUsers, .join])
        #expect(machine.phase == .joining)
        #expect(!machine.acceptsLogins)
        #expect(machine.joined() == [])
        #expect(machine.acceptsLogins)
    }

    @Test func outcomesInTheWrongPhaseAreIgnored() {
        let clock = TestClock()
        var machine = Machine(clock: clock, lease: .seconds(9))
        #expect(machine.connected() == [])
        #expect(machine.joined() == [])
        #expect(machine.renewed() == [])
        #expect(machine.evicted() == [])
        #expect(machine.connectionLost() == [])
        #expect(machine.phase == .down)
        var joined = member(clock)
        #expect(joined.renewed() == [], "no renewal in flight")
        #expect(joined.connected() == [])
        #expect(joined.phase == .member)
    }
}
