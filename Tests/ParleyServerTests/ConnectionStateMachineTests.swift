import NIOCore
import ParleyProtocol
import ParleyProtocolNIO
import Testing
@testable import ParleyServer

extension ManualClock: ConnectionClock {}

private typealias Machine = ConnectionStateMachine<ManualClock>

private let idle = TimeAmount.seconds(120)
private let loginTimeout = TimeAmount.seconds(60)

private func makeMachine(_ clock: ManualClock, maxBadFrames: Int = 10) -> Machine {
    Machine(clock: clock, idleTimeout: idle, loginTimeout: loginTimeout, maxBadFramesInARow: maxBadFrames)
}

private func request(_ request: Request, _ id: Int64? = nil) -> Machine.Inbound {
    .request(request, id: id)
}

/// A machine logged in as alice, with the clock it reads.
private func online(_ clock: ManualClock = ManualClock()) -> Machine {
    var machine = makeMachine(clock)
    _ = machine.connected()
    _ = machine.received(request(.login(username: "Alice", password: "pw-alice"), 1))
    machine.taskStarted()
    _ = machine.taskFinished()
    _ = machine.loginFinished(as: "alice")
    return machine
}

@Suite("connection state machine (no I/O, test clock)")
struct ConnectionStateMachineTests {
    @Test func passwdRunsForTheLoggedInUserAndALockEndsTheSessionSayingWhy() {
        let clock = ManualClock()
        var anonymous = makeMachine(clock)
        _ = anonymous.connected()
        let early = anonymous.received(request(.passwd(old: "old-pw-1", new: "new-pw-1"), 1))
        #expect(early == .reply(.error(id: 1, .notLoggedIn)))
        var machine = online(clock)
        let change = machine.received(request(.passwd(old: "old-pw-1", new: "new-pw-1"), 2))
        #expect(change == .run(.changePassword(user: "alice", old: "old-pw-1", new: "new-pw-1"), id: 2))
        machine.taskStarted()
        let waiting = machine.received(request(.whoelse, 3))
        #expect(waiting == .none, "later requests wait for the check")
        let finished = machine.taskFinished()
        #expect(finished)
        let locked = machine.accountLocked()
        #expect(locked == .close(.accountLocked))
        #expect(machine.isClosed)
        let next = machine.nextAction()
        #expect(next == nil, "nothing queued runs once the session ended")
        #expect(EndReason.accountLocked.wireReason == .accountLocked)
        #expect(EndReason.accountLocked.privateStopText(user: "Alice") == "Alice logged out")
    }

    @Test func loginIsTheOnlyRequestBeforeLoggingInAndAFailedLoginMayBeRetried() {
        let clock = ManualClock()
        var machine = makeMachine(clock)
        let step1 = machine.connected()
        #expect(step1 == .arm(clock.now + loginTimeout))
        let step2 = machine.received(request(.whoelse, 1))
        #expect(step2 == .reply(.error(id: 1, .notLoggedIn)))
        let oldVersion = machine.received(request(.login(username: "alice", password: "pw", version: 99), 2))
        guard case .reply(let refusal) = oldVersion else { Issue.record("no refusal: \(oldVersion)"); return }
        #expect(refusal.id == 2)
        #expect(refusal.outcome == .error(code: .unsupportedVersion, message: "Error. This server speaks protocol version \(Limits.protocolVersion)"))

        let step3 = machine.received(request(.login(username: "alice", password: "pw"), 3))
        #expect(step3 == .run(.login(username: "alice", password: "pw"), id: 3))
        machine.taskStarted()
        let step4 = machine.received(request(.whoelse, 4))
        #expect(step4 == .none, "a request during the login waits for its outcome")
        let step5 = machine.taskFinished()
        #expect(step5)
        let step6 = machine.loginFinished(as: nil)
        #expect(step6 == .none)
        let step7 = machine.nextAction()
        #expect(step7 == .reply(.error(id: 4, .notLoggedIn)), "the queued request sees the failed login")
        let step8 = machine.nextAction()
        #expect(step8 == nil)

        let step9 = machine.received(request(.login(username: "alice", password: "right"), 5))
        #expect(step9 == .run(.login(username: "alice", password: "right"), id: 5))
        machine.taskStarted()
        let step10 = machine.received(request(.whoelse, 6))
        #expect(step10 == .none)
        let step11 = machine.taskFinished()
        #expect(step11)
        clock.advance(.seconds(3))
        let step12 = machine.loginFinished(as: "alice")
        #expect(step12 == .arm(clock.now + idle), "online: the idle timeout replaces the login deadline")
        #expect(machine.phase == .online(name: "alice", lastActivity: clock.now))
        let step13 = machine.nextAction()
        #expect(step13 == .run(.whoelse, id: 6), "the queued request runs as alice")
        let step14 = machine.received(request(.login(username: "alice", password: "right"), 7))
        #expect(step14 == .reply(.error(id: 7, .alreadyLoggedIn)))
    }

    @Test func requestsWaitInOrderBehindATaskAndReadingStopsWhileTheQueueIsFull() {
        var machine = online()
        let step15 = machine.received(request(.message(to: "bob", text: "stored"), 1))
        #expect(step15 == .run(.message(to: "bob", text: "stored"), id: 1))
        machine.taskStarted()
        let waiting = Machine.maxQueued + 8
        for id in 2...Int64(1 + waiting) {
            let step16 = machine.received(request(.whoelse, id))
            #expect(step16 == .none)
        }
        #expect(machine.queued == waiting)
        let step17 = machine.mayRead()
        #expect(!step17, "a full queue stops reading from the socket")
        #expect(machine.readSuppressed)
        let step18 = machine.nextAction()
        #expect(step18 == nil, "nothing runs while the task is under way")

        let step19 = machine.taskFinished()
        #expect(step19)
        var ran: [Int64] = []
        var resumedAt: Int?
        while let action = machine.nextAction() {
            switch action {
            case .run(.whoelse, let id?):
                ran.append(id)
                if id == 10 { machine.taskStarted() }  // this one needs the store too
            case .resumeReading:
                resumedAt = machine.queued
                #expect(machine.busy, "reading resumes while waiting, once the queue has room")
                let step20 = machine.taskFinished()
                #expect(step20)
            default:
                Issue.record("unexpected \(action)")
            }
        }
        #expect(ran == Array(2...Int64(1 + waiting)), "queued requests run in the order they arrived")
        #expect(resumedAt == waiting - 9)
        #expect(!machine.readSuppressed)
        let step21 = machine.mayRead()
        #expect(step21)
        let step22 = machine.received(request(.whoelse, 99))
        #expect(step22 == .run(.whoelse, id: 99), "an empty queue: handled at once")
    }

    @Test func idleTimeoutCountsFromTheLastRequestAndRearmsLazily() {
        let clock = ManualClock()
        var machine = online(clock)
        let firstDeadline = clock.now + idle
        clock.advance(.seconds(100))
        let step23 = machine.received(request(.active))
        #expect(step23 == .none, "active without id: no reply, but it counts")
        let lastRequest = clock.now
        clock.advance(.seconds(20))
        let step24 = machine.timerFired()
        #expect(step24 == .arm(lastRequest + idle), "the timer armed at login fires at \(firstDeadline) and moves on")
        clock.advance(.seconds(99))
        let step25 = machine.timerFired()
        #expect(step25 == .arm(lastRequest + idle), "early wakeups rearm for the same deadline")
        clock.advance(.seconds(1))
        let step26 = machine.timerFired()
        #expect(step26 == .close(.idle))
        #expect(machine.isClosed)
        let step27 = machine.received(request(.whoelse, 1))
        #expect(step27 == .none, "nothing is handled once closed")
        let step28 = machine.timerFired()
        #expect(step28 == .none)
    }

    @Test func theLoginDeadlineHoldsWhileALoginIsBeingChecked() {
        let clock = ManualClock()
        var machine = makeMachine(clock)
        let deadline = clock.now + loginTimeout
        let step29 = machine.connected()
        #expect(step29 == .arm(deadline))
        clock.advance(.seconds(59))
        let step30 = machine.timerFired()
        #expect(step30 == .arm(deadline))
        _ = machine.received(request(.login(username: "alice", password: "pw"), 1))
        machine.taskStarted()
        clock.advance(.seconds(1))
        let step31 = machine.timerFired()
        #expect(step31 == .close(.loginDeadline))
        let step32 = machine.taskFinished()
        #expect(!step32, "a login that ends after the close is dropped")
        let step33 = machine.loginFinished(as: "alice")
        #expect(step33 == .none)
        #expect(machine.isClosed)
    }

    @Test func logoutClosesAtOnceOrWaitsBoundedForAcksOfStoredMessages() {
        var quick = online()
        let step34 = quick.received(request(.logout, 1))
        #expect(step34 == .logOut(id: 1, linger: nil))
        #expect(quick.isClosed)

        let clock = ManualClock()
        var machine = online(clock)
        machine.storedMessageSent(41)
        machine.storedMessageSent(42)
        let step35 = machine.received(request(.logout, 2))
        #expect(step35 == .logOut(id: 2, linger: clock.now + Machine.ackWait))
        let step36 = machine.received(request(.whoelse, 3))
        #expect(step36 == .none, "after logout only acks count")
        let step37 = machine.received(request(.ack(delivery: 41)))
        #expect(step37 == .run(.acknowledge(delivery: 41, user: "alice"), id: nil))
        let step38 = machine.acknowledged(41)
        #expect(step38 == .none)
        let step39 = machine.received(request(.ack(delivery: 42), 4))
        #expect(step39 == .run(.acknowledge(delivery: 42, user: "alice"), id: 4))
        let step40 = machine.acknowledged(42)
        #expect(step40 == .close(.acksSettled), "the last ack closes the connection")

        var late = online(clock)
        late.storedMessageSent(7)
        _ = late.received(request(.logout))
        clock.advance(Machine.ackWait)
        let step41 = late.timerFired()
        #expect(step41 == .close(.acksSettled), "the wait for acks is bounded")
    }

    @Test func badFramesInARowCloseAndAGoodRequestResetsTheCount() {
        var machine = makeMachine(ManualClock(), maxBadFrames: 3)
        _ = machine.connected()
        let bad = ProtocolError(.badFrame, "missing field 'to'", id: 5)
        let step42 = machine.received(.malformed(bad))
        #expect(step42 == .reply(.error(bad)))
        let step43 = machine.received(.malformed(bad))
        #expect(step43 == .reply(.error(bad)))
        let step44 = machine.received(request(.whoelse, 6))
        #expect(step44 == .reply(.error(id: 6, .notLoggedIn)))
        let step45 = machine.received(.malformed(bad))
        #expect(step45 == .reply(.error(bad)))
        let step46 = machine.received(.malformed(bad))
        #expect(step46 == .reply(.error(bad)))
        let tooLarge = Machine.Inbound(.tooLarge, maxFrameBytes: 1024)
        #expect(tooLarge == .malformed(ProtocolError(.frameTooLarge, "frame larger than 1024 bytes")))
        let step47 = machine.received(tooLarge)
        #expect(step47 == .close(.badFrames(.frameTooLarge)))
        #expect(machine.isClosed)
    }

    @Test func checksThatNeedNoStateOutsideTheConnectionAreAnsweredHere() {
        var machine = online()
        let step48 = machine.received(request(.message(to: "ALICE", text: "hi"), 1))
        #expect(step48 == .reply(.error(id: 1, .cannotMessageSelf)))
        let step49 = machine.received(request(.message(to: "bad name", text: "hi"), 2))
        #expect(step49 == .reply(.error(id: 2, .unknownUser)))
        let step50 = machine.received(request(.message(to: "bob", text: ""), 3))
        #expect(step50
            == .reply(.error(id: 3, .badFrame, message: "Error. Message must be 1 to 4096 bytes")))
        let step51 = machine.received(request(.message(to: "BoB", text: "hi"), 4))
        #expect(step51 == .run(.message(to: "bob", text: "hi"), id: 4))
        let step52 = machine.received(request(.block(user: "alice"), 5))
        #expect(step52 == .reply(.error(id: 5, .cannotBlockSelf)))
        let step53 = machine.received(request(.unblock(user: "alice"), 6))
        #expect(step53 == .reply(.error(id: 6, .notBlocked)))
        let step54 = machine.received(request(.block(user: "Bob"), 7))
        #expect(step54 == .run(.setBlock(user: "bob", active: true), id: 7))
        let step55 = machine.received(request(.active, 8))
        #expect(step55 == .reply(.ok(id: 8)))
        let step56 = machine.received(request(.stopPrivate(user: "bob"), 9))
        #expect(step56 == .run(.privateLink(.stopPrivate(user: "bob")), id: 9))
    }

    @Test func closingForOtherReasonsDropsWhatWaits() {
        var slow = online()
        let step57 = slow.slowConsumer()
        #expect(step57 == .close(.slowConsumer))
        let step58 = slow.slowConsumer()
        #expect(step58 == .none, "once")

        var stopping = online()
        stopping.taskStarted()
        _ = stopping.received(request(.whoelse, 1))
        let step59 = stopping.serverStopping()
        #expect(step59 == .close(.serverStopping))
        let step60 = stopping.taskFinished()
        #expect(!step60)
        let step61 = stopping.nextAction()
        #expect(step61 == nil, "queued requests are not run after the close")

        var gone = online()
        gone.taskStarted()
        _ = gone.received(request(.whoelse, 1))
        gone.channelClosed()
        #expect(gone.queued == 0)
        let step62 = gone.taskFinished()
        #expect(!step62)
    }

    @Test func endReasonsKeepTheirWireValuesAndPeerTexts() {
        #expect(EndReason.loggedOut.wireReason?.rawValue == "logout")
        #expect(EndReason.idle.wireReason?.rawValue == "timeout")
        #expect(EndReason.slowConsumer.wireReason?.rawValue == "slow_consumer")
        #expect(EndReason.disconnected.wireReason == nil)
        #expect(EndReason.badFrames(.badFrame).wireReason == nil)
        #expect(EndReason.loggedOut.privateStopText(user: "Bob") == "Bob logged out")
        #expect(EndReason.idle.privateStopText(user: "Bob") == "Bob timed out")
        #expect(EndReason.slowConsumer.privateStopText(user: "Bob") == "Bob lost the connection to the server")
        #expect(EndReason.kicked.wireReason?.rawValue == "kicked")
        #expect(EndReason.disabled.wireReason?.rawValue == "disabled")
        #expect(EndReason.kicked.privateStopText(user: "Bob") == "Bob was logged out by the server operator")
    }

    @Test func theOperatorEndsOnlyALoggedInSessionAndReadsItsIdleTime() {
        let clock = ManualClock()
        var greeting = makeMachine(clock)
        _ = greeting.connected()
        #expect(greeting.idleTime == nil, "no idle time before login")
        let step70 = greeting.endedByOperator(.kicked)
        #expect(step70 == .none, "nobody to log out before login")
        #expect(!greeting.isClosed)

        var machine = online(clock)
        clock.advance(.seconds(30))
        #expect(machine.idleTime == .seconds(30))
        _ = machine.received(request(.whoelse, 2))
        clock.advance(.seconds(5))
        #expect(machine.idleTime == .seconds(5), "a request moves the idle time back")
        let step71 = machine.endedByOperator(.disabled)
        #expect(step71 == .close(.disabled))
        #expect(machine.isClosed)
        #expect(machine.idleTime == nil)
        let step72 = machine.endedByOperator(.kicked)
        #expect(step72 == .none, "ending twice does nothing")

        var lingering = online(clock)
        lingering.storedMessageSent(9)
        _ = lingering.received(request(.logout, 3))
        let step73 = lingering.endedByOperator(.kicked)
        #expect(step73 == .close(.kicked), "a session waiting for acks after logout is closed at once")
    }
}
