import NIOCore
import ParleyProtocol
import Testing
@testable import ParleyServer

private typealias Machine = ConnectionStateMachine<ManualClock>

/// A machine logged in as alice with a command bucket of `burst` refilled at `perSecond`.
private func limited(_ clock: ManualClock, perSecond: Double = 2, burst: Int = 3, floodRefusals: Int = 4,
                     floodWindow: TimeAmount = .seconds(10)) -> Machine {
    var machine = Machine(clock: clock, idleTimeout: .seconds(120), loginTimeout: .seconds(60), maxBadFramesInARow: 10,
                          commandRate: CommandRate(perSecond: perSecond, burst: burst, floodRefusals: floodRefusals,
                                                   floodWindow: floodWindow))
    _ = machine.connected()
    _ = machine.received(.request(.login(username: "alice", password: "pw-alice"), id: 1))
    machine.taskStarted()
    _ = machine.taskFinished()
    _ = machine.loginFinished(as: "alice")
    return machine
}

private func refusal(_ id: Int64) -> ConnectionStateMachine<ManualClock>.Action {
    .reply(.error(id: id, .rateLimited, message: "Error. Too many commands, slow down"))
}

@Suite("limit rules (no I/O, test clock)")
struct LimitRulesTests {
    @Test func commandsPastTheBurstAreRefusedUntilTheBucketRefills() {
        let clock = ManualClock()
        // The login took one token of the burst of 3.
        var machine = limited(clock)
        #expect(machine.received(.request(.whoelse, id: 2)) == .run(.whoelse, id: 2))
        #expect(machine.received(.request(.whoelse, id: 3)) == .run(.whoelse, id: 3))
        #expect(machine.received(.request(.whoelse, id: 4)) == refusal(4))
        clock.advance(.milliseconds(499))
        #expect(machine.received(.request(.whoelse, id: 5)) == refusal(5), "2 per second: not yet a whole token")
        clock.advance(.milliseconds(1))
        #expect(machine.received(.request(.whoelse, id: 6)) == .run(.whoelse, id: 6))
        #expect(machine.received(.request(.whoelse, id: 7)) == refusal(7))
        clock.advance(.seconds(60))
        for id in Int64(8)...10 { #expect(machine.received(.request(.whoelse, id: id)) == .run(.whoelse, id: id)) }
        #expect(machine.received(.request(.whoelse, id: 11)) == refusal(11), "refilled to the burst, no further")
    }

    @Test func acksAreNeverRefused() {
        let clock = ManualClock()
        var machine = limited(clock, burst: 1, floodRefusals: 100)
        #expect(machine.received(.request(.whoelse, id: 2)) == refusal(2))
        for delivery in Int64(1)...50 {
            #expect(machine.received(.request(.ack(delivery: delivery), id: nil)) == .run(.acknowledge(delivery: delivery, user: "alice"), id: nil))
        }
    }

    @Test func aClientThatKeepsGoingAfterRefusalsIsLoggedOutForFlooding() {
        let clock = ManualClock()
        var machine = limited(clock, burst: 1, floodRefusals: 3)
        #expect(machine.received(.request(.whoelse, id: 2)) == refusal(2))
        #expect(machine.received(.request(.whoelse, id: 3)) == refusal(3))
        #expect(machine.received(.request(.whoelse, id: 4)) == .close(.flooding))
        #expect(machine.isClosed)
        #expect(machine.received(.request(.whoelse, id: 5)) == .none)
        #expect(EndReason.flooding.wireReason == .flooding)
        #expect(LogoutReason.flooding.rawValue == "flooding")
    }

    @Test func refusalsSpreadWiderThanTheWindowDoNotCountAsFlooding() {
        let clock = ManualClock()
        var machine = limited(clock, perSecond: 0.01, burst: 1, floodRefusals: 3, floodWindow: .seconds(10))
        var id: Int64 = 2
        for _ in 0..<10 {
            #expect(machine.received(.request(.whoelse, id: id)) == refusal(id))
            #expect(machine.received(.request(.whoelse, id: id + 1)) == refusal(id + 1))
            id += 2
            clock.advance(.seconds(11))
        }
        #expect(!machine.isClosed)
    }

    @Test func withoutARateTheMachineRefusesNothing() {
        let clock = ManualClock()
        var machine = Machine(clock: clock, idleTimeout: .seconds(120), loginTimeout: .seconds(60), maxBadFramesInARow: 10)
        _ = machine.connected()
        for id in Int64(1)...500 { #expect(machine.received(.request(.whoelse, id: id)) == .reply(.error(id: id, .notLoggedIn))) }
    }

    @Test func tokenBucketRefillsEvenlyAndCapsAtItsCapacity() {
        let clock = ManualClock()
        var bucket = TokenBucket(capacity: 2, perSecond: 1, now: clock.now)
        var taken: [Bool] = []
        for _ in 0..<3 { taken.append(bucket.take(now: clock.now)) }
        #expect(taken == [true, true, false])
        #expect(!bucket.isFull(now: clock.now))
        clock.advance(.seconds(1))
        let refilled = bucket.take(now: clock.now)
        #expect(refilled)
        clock.advance(.seconds(100))
        #expect(bucket.isFull(now: clock.now))
        taken = []
        for _ in 0..<3 { taken.append(bucket.take(now: clock.now)) }
        #expect(taken == [true, true, false], "capped at its capacity")
    }

    @Test func connectionTableCountsOpenAndNewPerAddress() {
        let clock = ManualClock()
        var limits = ServerLimits()
        limits.maxConnectionsPerAddress = 2
        limits.maxNewConnectionsPerMinute = 3
        var table = ConnectionTable(limits: limits)
        #expect(table.opened("10.0.0.1", now: clock.now) == .admitted)
        #expect(table.opened("10.0.0.1", now: clock.now) == .admitted)
        #expect(table.opened("10.0.0.1", now: clock.now) == .tooManyOpen)
        #expect(table.opened("10.0.0.2", now: clock.now) == .admitted, "another address has its own counts")
        table.closed("10.0.0.1")
        #expect(table.openCount("10.0.0.1") == 1)
        #expect(table.opened("10.0.0.1", now: clock.now) == .admitted, "the refused one did not spend a new-connection token")
        table.closed("10.0.0.1")
        table.closed("10.0.0.1")
        #expect(table.opened("10.0.0.1", now: clock.now) == .tooManyNew, "three new ones within the minute")
        clock.advance(.seconds(20))
        #expect(table.opened("10.0.0.1", now: clock.now) == .admitted, "one more after a third of a minute")
        table.closed("10.0.0.1")
        table.closed("10.0.0.2")
        #expect(table.addressesOpen == 0)
    }

    @Test func addressTablesForgetAddressesOnceTheirBucketRefilled() {
        let clock = ManualClock()
        var buckets = AddressBuckets(capacity: 10, per: .hours(1))
        var allTaken = true
        for n in 0..<5000 { allTaken = buckets.take("10.1.\(n / 256).\(n % 256)", now: clock.now) && allTaken }
        #expect(allTaken)
        #expect(buckets.count <= 5000)
        clock.advance(.hours(1))
        let fresh = buckets.take("10.9.9.9", now: clock.now)
        #expect(fresh)
        buckets.sweep(now: clock.now)
        #expect(buckets.count == 1, "only the address whose bucket is not full is remembered")
    }

    @Test func failedLoginLinesCannotBeForged() {
        let line = FailedLoginLine(user: "eve\nparley: login failed user=x address=1.2.3.4", address: "127.0.0.2", reason: .invalidUsername)
        #expect(!line.description.contains("\n"))
        #expect(line.description.hasPrefix("parley: login failed user=eve?parley??login?failed?user?x?"))
        #expect(!line.description.contains("address=1.2.3.4"))
        #expect(line.description.hasSuffix(" address=127.0.0.2 reason=invalid_username"))
        #expect(line.description.split(separator: " ").count == 6)
        let plain = FailedLoginLine(user: "Alice", address: "::1", reason: .wrongPassword)
        #expect(plain.description == "parley: login failed user=Alice address=::1 reason=wrong_password")
        #expect(FailedLoginLine(user: "", address: nil, reason: .accountLocked).description
                == "parley: login failed user=- address=- reason=account_locked")
        #expect(FailedLoginLine.sanitised(String(repeating: "a", count: 500)).count == FailedLoginLine.maxUserCharacters)
        #expect(FailedLoginLine.sanitised("x\u{1B}[31my\u{0}") == "x??31my?")
    }

    @Test func metricsAddressParsing() {
        #expect(MetricsAddress(parsing: "127.0.0.1:9331") == MetricsAddress(host: "127.0.0.1", port: 9331))
        #expect(MetricsAddress(parsing: "[::1]:9331") == MetricsAddress(host: "::1", port: 9331))
        #expect(MetricsAddress(parsing: "9331") == nil)
        #expect(MetricsAddress(parsing: ":9331") == nil)
        #expect(MetricsAddress(parsing: "localhost:70000") == nil)
    }
}
