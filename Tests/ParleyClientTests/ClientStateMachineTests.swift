import ParleyClient
import ParleyProtocol
import ParleyProtocolNIO
import Testing

/// Drives a machine and keeps what it asked for, so tests read like a transcript.
struct Driver {
    var machine: ClientStateMachine
    var log: [ClientAction] = []

    init(username: String? = nil) {
        machine = ClientStateMachine(username: username)
        log = machine.start()
    }

    @discardableResult
    mutating func feed(_ event: ClientEvent) -> [ClientAction] {
        let actions = machine.handle(event)
        log += actions
        return actions
    }

    /// Logs in as alice with id 1 and clears the log.
    mutating func online(_ name: String = "alice") {
        feed(.line(name))
        feed(.line("password-\(name)"))
        feed(.frame(.reply(.ok(id: 1, .login(username: name, created: false)))))
        log = []
    }
}

func shown(_ actions: [ClientAction]) -> [Output] {
    actions.compactMap { if case .show(let output) = $0 { output } else { nil } }
}

func sent(_ actions: [ClientAction]) -> [(Request, Int64?)] {
    actions.compactMap { if case .send(let request, let id) = $0 { (request, id) } else { nil } }
}

func exitStatus(_ actions: [ClientAction]) -> ParleyClient.ExitStatus? {
    actions.lazy.compactMap { if case .exit(let status) = $0 { status } else { nil } }.first
}

@Suite("client state machine: events in, actions out, no I/O")
struct ClientStateMachineTests {
    @Test func loginAsksNameThenPasswordSendsIdOneAndReadsCommandsAfterTheWelcome() {
        var d = Driver()
        #expect(d.log == [.readLine(prompt: "Username: ", secret: false)])
        #expect(d.feed(.line("  ")) == [.readLine(prompt: "Username: ", secret: false)])
        #expect(d.feed(.line("alice")) == [.readLine(prompt: "Password: ", secret: true)])
        #expect(d.feed(.line("pw-alice-1")) == [
            .send(.login(username: "alice", password: "pw-alice-1"), id: 1), .armTimer(.reply(id: 1), after: .seconds(10)),
        ])
        #expect(d.feed(.frame(.reply(.ok(id: 1, .login(username: "Alice", created: true))))) == [
            .cancelTimer(.reply(id: 1)), .show(.login(.loggedIn(username: "Alice", created: true))),
            .readLine(prompt: "> ", secret: false),
        ])
    }

    @Test func refusalsRetryOrExitWithTheirStatus() {
        var d = Driver(username: "bob")
        #expect(d.log == [.readLine(prompt: "Password: ", secret: true)])
        d.feed(.line("wrong-one-1"))
        let retry = d.feed(.frame(.reply(.error(id: 1, .wrongPassword))))
        #expect(retry.last == .readLine(prompt: "Password: ", secret: true))
        d.feed(.line("wrong-one-2"))
        let locked = d.feed(.frame(.reply(.error(id: 2, .accountLockedNow))))
        #expect(exitStatus(locked) == .accountLocked)
        #expect(locked.contains(.close))
        #expect(d.machine.isFinished)

        var e = Driver()
        #expect(exitStatus(e.feed(.inputEnded)) == .badCredentials)
        var f = Driver(username: "carol")
        f.feed(.line("password-carol"))
        // A preset name that is refused cannot be re-asked.
        #expect(exitStatus(f.feed(.frame(.reply(.error(id: 1, .registrationClosed))))) == .badCredentials)
        var g = Driver(username: "dave")
        g.feed(.line("password-dave"))
        #expect(exitStatus(g.feed(.frame(.reply(.error(id: 1, .accountDisabled))))) == .badCredentials,
                "a disabled account is a refusal, not an internal error")
    }

    @Test func commandsAreInFlightTogetherAndLocalOutputWaitsForEarlierReplies() {
        var d = Driver()
        d.online()
        #expect(sent(d.feed(.line("whoelse"))).map(\.1) == [2])
        #expect(sent(d.feed(.line("block alice"))).map(\.1) == [3])
        // Typed after two unanswered commands: shown after their replies, not before.
        #expect(shown(d.feed(.line("nonsense"))).isEmpty)
        #expect(sent(d.feed(.line("message nobody hi"))).map(\.1) == [4])
        #expect(shown(d.feed(.frame(.reply(.ok(id: 2, .users(["bob"])))))) == [.reply(.ok(id: 2, .users(["bob"])), command: .whoelse)])
        // An event between replies is shown where it arrived on the wire.
        #expect(shown(d.feed(.frame(.presence(user: "carol", online: true)))) == [.event(.presence(user: "carol", online: true))])
        let third = shown(d.feed(.frame(.reply(.error(id: 3, .cannotBlockSelf)))))
        #expect(third.count == 2)
        #expect(third.first == .reply(.error(id: 3, .cannotBlockSelf), command: .block(user: "alice")))
        guard case .local(.invalidCommand)? = third.last else {
            Issue.record("the invalid command's message follows the reply typed before it")
            return
        }
        #expect(shown(d.feed(.frame(.reply(.error(id: 4, .unknownUser))))).count == 1)
    }

    @Test func aMissingReplyIsReportedOnceAndItsLateReplyIgnored() {
        var d = Driver()
        d.online()
        d.feed(.line("whoelse"))
        d.feed(.line("help"))
        let timedOut = shown(d.feed(.timerFired(.reply(id: 2))))
        #expect(timedOut.first == .local(.clientError(code: "no_reply", message: "Error. The server did not answer in time")))
        #expect(timedOut.last == .local(.help))
        #expect(shown(d.feed(.frame(.reply(.ok(id: 2, .users([])))))).isEmpty)
    }

    @Test func storedMessagesAreShownThenAcked() {
        var d = Driver()
        d.online()
        let actions = d.feed(.frame(.message(from: "bob", text: "earlier", delivery: 7, sent: 1)))
        #expect(actions == [.show(.event(.message(from: "bob", text: "earlier", delivery: 7, sent: 1))), .send(.ack(delivery: 7), id: nil)])
        #expect(sent(d.feed(.frame(.message(from: "bob", text: "live")))).isEmpty, "live messages need no ack")
    }

    @Test func logoutDrainsStoredMessagesUntilItsReplyThenWaitsForTheServersClose() {
        var d = Driver()
        d.online()
        let logout = d.feed(.inputEnded)
        #expect(sent(logout).map(\.0) == [.logout])
        #expect(!logout.contains { if case .readLine = $0 { true } else { false } })
        // Sent by the server before it read `logout`: still shown and acked.
        let late = d.feed(.frame(.message(from: "bob", text: "just in time", delivery: 9, sent: 1)))
        #expect(sent(late).map(\.0) == [.ack(delivery: 9)])
        let replied = d.feed(.frame(.reply(.ok(id: 2))))
        #expect(replied.contains(.armTimer(.logoutClose, after: .seconds(10))))
        #expect(exitStatus(replied) == nil, "the server closes once it has every ack")
        #expect(d.feed(.frame(.loggedOut(reason: .logout))).allSatisfy { if case .send = $0 { false } else { true } })
        #expect(exitStatus(d.feed(.connectionClosed(nil))) == .ok)

        var frozen = Driver()
        frozen.online()
        frozen.feed(.line("logout"))
        #expect(exitStatus(frozen.feed(.timerFired(.reply(id: 2)))) == .ok, "a server that never answers does not hold the exit")
    }

    @Test func theServerEndingTheSessionPicksTheExitStatus() {
        var d = Driver()
        d.online()
        d.feed(.frame(.loggedOut(reason: .timeout)))
        #expect(exitStatus(d.feed(.connectionClosed(nil))) == .timedOut)
        var e = Driver()
        e.online()
        let lost = e.feed(.connectionClosed(.connectionClosed))
        #expect(exitStatus(lost) == .connectionLost)
        #expect(shown(lost) == [.local(.clientError(code: "connection_lost", message: "Error. connection to the server lost"))])
    }

    /// alice (logged in) asked bob and the link is open as attempt #1.
    func openLink() -> Driver {
        var d = Driver()
        d.online()
        let start = d.feed(.line("startprivate bob"))
        #expect(start.contains(.sendStartPrivate(user: "bob", attempt: PrivateAttempt(1), id: 2)))
        d.feed(.frame(.reply(.ok(id: 2))))
        let fingerprint = String(repeating: "ab", count: 32)
        let accepted = d.feed(.frame(.privateAccepted(user: "bob", host: "127.0.0.1", port: 4000, fingerprint: fingerprint, linkID: "s1")))
        guard case .connect(let attempt, "127.0.0.1", 4000, _)? = accepted.first else {
            Issue.record("accepting connects: \(accepted)")
            return d
        }
        d.feed(.privateLink(.opened(attempt: attempt, safetyCode: "123 456", peerFingerprint: fingerprint)))
        d.log = []
        return d
    }

    @Test func aPrivateMessageGoesOutAtOnceWhileTheServerDoesNotAnswer() {
        var d = openLink()
        #expect(sent(d.feed(.line("message bob x"))).map(\.1) == [3])
        let privately = d.feed(.line("private bob y"))
        #expect(privately.first == .sendPrivate(PrivateAttempt(1), text: "y"))
        #expect(sent(privately).map(\.0) == [.active])
        #expect(shown(privately).isEmpty, "the 'sent' notice keeps its place behind the unanswered message")
        // Text from bob is an event: it does not wait either.
        #expect(shown(d.feed(.privateLink(.link(attempt: PrivateAttempt(1), .text("z"))))) == [
            .local(.privateChat(.message(from: "bob", text: "z"))),
        ])
        #expect(shown(d.feed(.frame(.reply(.ok(id: 3))))) == [
            .reply(.ok(id: 3), command: .message(to: "bob", text: "x")), .local(.privateChat(.sent(to: "bob"))),
        ])
    }

    @Test func stopAndTheLinkClosingTellEveryoneOnce() {
        var d = openLink()
        let stop = d.feed(.line("stopprivate bob"))
        #expect(stop.contains(.closePrivate(PrivateAttempt(1), reason: "alice stopped private messaging")))
        #expect(sent(stop).map(\.0) == [.stopPrivate(user: "bob")])
        #expect(shown(stop) == [.local(.privateChat(.stopped(user: "bob")))])
        #expect(d.feed(.privateLink(.link(attempt: PrivateAttempt(1), .closed(nil)))).isEmpty, "an attempt that is over is ignored")

        var e = openLink()
        e.feed(.privateLink(.link(attempt: PrivateAttempt(1), .bye(reason: "bob logged out"))))
        let closed = e.feed(.privateLink(.link(attempt: PrivateAttempt(1), .closed(nil))))
        #expect(shown(closed) == [.local(.privateChat(.ended(user: "bob", reason: "bob logged out")))])
        #expect(shown(e.feed(.line("private bob hello?"))) == [
            .local(.privateChat(.failure(code: "private_not_enabled", message: "Error. Private messaging to bob not enabled"))),
        ])
    }

    @Test func acceptingListensAnswersWithThePortAndGivesUpWhenNobodyConnects() {
        var d = Driver(username: "bob")
        d.feed(.line("password-bob"))
        d.feed(.frame(.reply(.ok(id: 1, .login(username: "bob", created: false)))))
        #expect(shown(d.feed(.frame(.privateRequest(from: "alice")))) == [.local(.privateChat(.request(from: "alice")))])
        // Not y/n: runs as a command; the reminder comes after its reply.
        let other = d.feed(.line("whoelse"))
        #expect(shown(other).isEmpty)
        #expect(shown(d.feed(.frame(.reply(.ok(id: 2, .users(["alice"])))))).last == .local(.privateChat(.askAgain(from: "alice"))))
        let yes = d.feed(.line("y"))
        #expect(yes.first == .listen(PrivateAttempt(1)))
        let answer = d.feed(.privateLink(.listening(attempt: PrivateAttempt(1), port: 4001, fingerprint: "ff")))
        #expect(sent(answer).map(\.0) == [.privateAnswer(user: "alice", accept: true, port: 4001, fingerprint: "ff")])
        #expect(d.feed(.frame(.reply(.ok(id: 3)))).contains(.armTimer(.listen(PrivateAttempt(1)), after: .seconds(30))))
        let gaveUp = d.feed(.timerFired(.listen(PrivateAttempt(1))))
        #expect(gaveUp.contains(.closePrivate(PrivateAttempt(1), reason: nil)))
        #expect(sent(gaveUp).map(\.0) == [.stopPrivate(user: "alice")])
        #expect(shown(gaveUp) == [.local(.privateChat(.ended(user: "alice", reason: "alice did not connect in time")))])
    }

    @Test func logoutClosesEveryPrivateSessionWithAReason() {
        var d = openLink()
        let out = d.feed(.line("logout"))
        #expect(out.first == .closePrivate(PrivateAttempt(1), reason: "alice logged out"))
        #expect(sent(out).map(\.0) == [.logout])
    }

    @Test func aKeyThatCannotBeMadeFailsTheRequestInItsTurn() {
        var d = Driver()
        d.online()
        d.feed(.line("startprivate bob"))
        #expect(shown(d.feed(.line("help"))).isEmpty)
        let failed = d.feed(.privateLink(.identityFailed(attempt: PrivateAttempt(1), message: "no entropy")))
        #expect(failed.contains(.cancelTimer(.reply(id: 2))))
        #expect(shown(failed) == [
            .local(.privateChat(.failure(code: "tls_configuration", message: "Error. no entropy"))), .local(.help),
        ])
        // bob is free again: a new request is a new attempt.
        #expect(d.feed(.line("startprivate bob")).contains(.sendStartPrivate(user: "bob", attempt: PrivateAttempt(2), id: 3)))
    }

    @Test func theServerEndingAPendingPromptRemovesIt() {
        var d = Driver()
        d.online()
        d.feed(.frame(.privateRequest(from: "carol")))
        #expect(shown(d.feed(.frame(.privateStopped(user: "carol", reason: "no answer in time")))) == [
            .local(.privateChat(.ended(user: "carol", reason: "no answer in time"))),
        ])
        // With no prompt up, y is just an invalid command.
        guard case .local(.invalidCommand)? = shown(d.feed(.line("y"))).first else {
            Issue.record("y without a prompt is not an answer")
            return
        }
    }
}
