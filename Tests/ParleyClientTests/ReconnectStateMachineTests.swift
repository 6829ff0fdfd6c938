import ParleyClient
import ParleyProtocol
import Testing

private let a = ServerEndpoint(host: "127.0.0.1", port: 3331)
private let b = ServerEndpoint(host: "127.0.0.2", port: 3332)

extension Driver {
    /// A machine that reconnects to `servers` (no jitter: the waits are the nominal back-off).
    init(reconnectingTo servers: [ServerEndpoint], attempts: Int = 30, confirm: Bool = false) {
        self.init()
        var configuration = ClientStateMachine.Configuration()
        var policy = ReconnectPolicy(servers: servers)
        policy.maxAttempts = attempts
        policy.jitter = { $0 }
        configuration.reconnect = policy
        configuration.confirmNewPassword = confirm
        machine = ClientStateMachine(configuration: configuration)
        log = machine.start()
    }

    /// alice asked bob and the link is open as attempt #1 (request id 2).
    mutating func openLink() {
        feed(.line("startprivate bob"))
        feed(.frame(.reply(.ok(id: 2))))
        let fingerprint = String(repeating: "ab", count: 32)
        feed(.frame(.privateAccepted(user: "bob", host: "127.0.0.1", port: 4000, fingerprint: fingerprint, linkID: "s1")))
        feed(.privateLink(.opened(attempt: PrivateAttempt(1), safetyCode: "123 456", peerFingerprint: fingerprint)))
        log = []
    }
}

func reconnectWaits(_ actions: [ClientAction]) -> [Duration] {
    actions.compactMap { if case .armTimer(.reconnect, let delay) = $0 { delay } else { nil } }
}

func connects(_ actions: [ClientAction]) -> [ServerEndpoint] {
    actions.compactMap { if case .connectServer(let server) = $0 { server } else { nil } }
}

@Suite("client state machine: reconnecting after a lost connection, and passwd")
struct ReconnectStateMachineTests {
    @Test func backoffDoublesFromHalfASecondToTenGoesRoundTheServersThenLogsInAgain() {
        var d = Driver(reconnectingTo: [a, b])
        d.online()
        let lost = d.feed(.connectionClosed(.tls(.uncleanShutdown)))
        #expect(shown(lost) == [.local(.connection(.reconnecting(to: b, attempt: 1, delay: .milliseconds(500), after: nil)))])
        #expect(reconnectWaits(lost) == [.milliseconds(500)])
        #expect(exitStatus(lost) == nil)
        var waits: [Duration] = reconnectWaits(lost)
        var servers: [ServerEndpoint] = []
        for _ in 1...6 {
            let fired = d.feed(.timerFired(.reconnect))
            servers += connects(fired)
            #expect(sent(fired).isEmpty, "nothing is written before a connection is up")
            waits += reconnectWaits(d.feed(.serverConnectFailed(.connectFailed("refused"))))
        }
        #expect(waits == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10)])
        #expect(servers == [b, a, b, a, b, a])
        #expect(connects(d.feed(.timerFired(.reconnect))) == [b])
        let login = d.feed(.serverConnected)
        #expect(sent(login).map(\.0) == [.login(username: "alice", password: "password-alice")])
        let id = sent(login)[0].1!
        let back = d.feed(.frame(.reply(.ok(id: id, .login(username: "alice", created: false)))))
        #expect(shown(back) == [.local(.connection(.reconnected(to: b, username: "alice")))])
        #expect(!back.contains { if case .readLine = $0 { true } else { false } }, "the read asked for before the loss is still out")
        // Stored messages after any login are shown and acked as usual.
        let stored = d.feed(.frame(.message(from: "bob", text: "missed you", delivery: 9, sent: 1)))
        #expect(sent(stored).map(\.0) == [.ack(delivery: 9)])
        // A later loss starts from half a second again.
        #expect(reconnectWaits(d.feed(.connectionClosed(nil))) == [.milliseconds(500)])
    }

    @Test func theDefaultJitterWaitsBetweenHalfAndAllOfTheBackoff() {
        for _ in 0..<200 {
            let wait = ReconnectPolicy.halfJitter(.seconds(4))
            #expect(wait >= .seconds(2) && wait <= .seconds(4))
        }
        var policy = ReconnectPolicy(servers: [a])
        #expect((1...8).map(policy.backoff(before:)) == [
            .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10), .seconds(10),
        ])
        policy.maxDelay = .seconds(3)
        #expect(policy.backoff(before: 4) == .seconds(3))
    }

    @Test func triesAreBoundedThenTheSessionEndsAsALostConnection() {
        var d = Driver(reconnectingTo: [a], attempts: 3)
        d.online()
        d.feed(.connectionClosed(nil))
        var last: [ClientAction] = []
        for _ in 1...3 {
            #expect(connects(d.feed(.timerFired(.reconnect))) == [a])
            last = d.feed(.serverConnectFailed(.connectFailed("refused")))
        }
        #expect(shown(last).contains(.local(.connection(.gaveUp(attempts: 3)))))
        #expect(exitStatus(last) == .connectionLost)
        #expect(reconnectWaits(last).isEmpty)
    }

    @Test func logoutTimeoutKickLockoutAndALoneServersShutdownNeverReconnect() {
        func ending(_ frames: [ServerMessage], servers: [ServerEndpoint] = [a], typed: [String] = []) -> [ClientAction] {
            var d = Driver(reconnectingTo: servers)
            d.online()
            for line in typed { d.feed(.line(line)) }
            for frame in frames { d.feed(.frame(frame)) }
            return d.log + d.feed(.connectionClosed(nil))
        }
        let cases: [(actions: [ClientAction], status: ParleyClient.ExitStatus)] = [
            (ending([.reply(.ok(id: 2))], typed: ["logout"]), .ok),
            (ending([.loggedOut(reason: .timeout)]), .timedOut),
            (ending([.loggedOut(reason: .slowConsumer)]), .connectionLost),
            (ending([.loggedOut(reason: .accountLocked)]), .accountLocked),
            (ending([.loggedOut(reason: .serverShutdown)]), .connectionLost),
        ]
        for (actions, status) in cases {
            #expect(exitStatus(actions) == status)
            #expect(reconnectWaits(actions).isEmpty && connects(actions).isEmpty)
        }
        // One node of several shutting down: the client moves to the next.
        let moved = ending([.loggedOut(reason: .serverShutdown)], servers: [a, b])
        #expect(exitStatus(moved) == nil)
        #expect(shown(moved).contains(.local(.connection(.reconnecting(to: b, attempt: 1, delay: .milliseconds(500), after: nil)))))
        // Input ending after the server's loggedout (before its close) keeps the server's reason.
        var late = Driver(reconnectingTo: [a])
        late.online()
        late.feed(.frame(.loggedOut(reason: .timeout)))
        let ended = late.feed(.inputEnded)
        #expect(exitStatus(ended) == .timedOut)
        #expect(sent(ended).isEmpty, "no logout to a server that already logged us out")
        // Without a reconnect policy the loss ends the session, as before.
        var plain = Driver()
        plain.online()
        #expect(exitStatus(plain.feed(.connectionClosed(nil))) == .connectionLost)
    }

    @Test func aRefusedLoginAgainEndsTheSessionButABusyServerIsTriedAgain() {
        func relogin(_ code: ErrorCode) -> (Driver, [ClientAction]) {
            var d = Driver(reconnectingTo: [a])
            d.online()
            d.feed(.connectionClosed(nil))
            d.feed(.timerFired(.reconnect))
            let id = sent(d.feed(.serverConnected))[0].1!
            let actions = d.feed(.frame(.reply(.error(id: id, code))))
            return (d, actions)
        }
        let (wrong, refused) = relogin(.wrongPassword)
        #expect(exitStatus(refused) == .badCredentials)
        #expect(wrong.machine.isFinished && reconnectWaits(refused).isEmpty)
        #expect(shown(refused).contains(.local(.clientError(
            code: "wrong_password", message: "Error. Could not log in again as alice: Invalid Password. Please try again"))))
        #expect(exitStatus(relogin(.accountLocked).1) == .accountLocked)
        #expect(exitStatus(relogin(.accountLockedNow).1) == .accountLocked)
        let (_, busy) = relogin(.alreadyOnline)
        #expect(exitStatus(busy) == nil)
        #expect(busy.contains(.dropServer))
        #expect(reconnectWaits(busy) == [.seconds(1)])
    }

    @Test func requestsInFlightFailOnceInTheOrderTypedAndAreNotSentAgain() {
        var d = Driver(reconnectingTo: [a])
        d.online()
        d.feed(.line("message bob hi"))
        d.feed(.line("whoelse"))
        d.feed(.line("help"))
        let lost = d.feed(.connectionClosed(nil))
        #expect(shown(lost) == [
            .local(.connection(.requestLost(command: "message"))),
            .local(.connection(.requestLost(command: "whoelse"))),
            .local(.help),
            .local(.connection(.reconnecting(to: a, attempt: 1, delay: .milliseconds(500), after: nil))),
        ])
        #expect(lost.contains(.cancelTimer(.reply(id: 2))) && lost.contains(.cancelTimer(.reply(id: 3))))
        // Typed while no server is there: refused at once, not queued.
        #expect(shown(d.feed(.line("broadcast anyone?"))) == [.local(.connection(.notConnected(command: "broadcast")))])
        d.feed(.timerFired(.reconnect))
        let relogin = d.feed(.serverConnected)
        let id = sent(relogin)[0].1!
        d.feed(.frame(.reply(.ok(id: id, .login(username: "alice", created: false)))))
        // A late answer to the lost message (from the old connection) changes nothing.
        #expect(d.feed(.frame(.reply(.ok(id: 2)))).isEmpty)
        let everything = d.log.flatMap { action -> [Request] in if case .send(let r, _) = action { [r] } else { [] } }
        #expect(everything.count(where: { $0 == .message(to: "bob", text: "hi") }) == 1, "sent once, never again")
        #expect(sent(d.feed(.line("message bob again"))).map(\.0) == [.message(to: "bob", text: "again")])
    }

    @Test func anOpenPrivateSessionOutlivesTheReconnectAndOneNotYetOpenEnds() {
        var d = Driver(reconnectingTo: [a])
        d.online()
        d.openLink()
        d.feed(.frame(.privateRequest(from: "carol")))
        let lost = d.feed(.connectionClosed(nil))
        #expect(!lost.contains(.closePrivate(PrivateAttempt(1), reason: "alice lost the connection to the server")))
        #expect(!lost.contains { if case .closePrivate(PrivateAttempt(1), _) = $0 { true } else { false } })
        #expect(shown(lost).contains(.local(.privateChat(.ended(user: "carol", reason: "connection to the server lost")))))
        // Over the direct link while reconnecting; the server is not told (there is none).
        let typed = d.feed(.line("private bob still here"))
        #expect(typed.contains(.sendPrivate(PrivateAttempt(1), text: "still here")))
        #expect(sent(typed).isEmpty)
        // The link closing meanwhile does not try to tell a server either.
        var e = d
        let closed = e.feed(.privateLink(.link(attempt: PrivateAttempt(1), .closed(nil))))
        #expect(sent(closed).isEmpty)
        // Blocking after the reconnect ends it on this side too (the new server may not know of it).
        d.feed(.timerFired(.reconnect))
        let id = sent(d.feed(.serverConnected))[0].1!
        d.feed(.frame(.reply(.ok(id: id, .login(username: "alice", created: false)))))
        let block = d.feed(.line("block bob"))
        let blocked = d.feed(.frame(.reply(.ok(id: sent(block)[0].1!))))
        #expect(blocked.contains(.closePrivate(PrivateAttempt(1), reason: "blocked")))
        #expect(shown(blocked).contains(.local(.privateChat(.ended(user: "bob", reason: "blocked")))))
    }

    @Test func logoutOrEndOfInputWhileReconnectingEndsTheSession() {
        var d = Driver(reconnectingTo: [a])
        d.online()
        d.openLink()
        d.feed(.connectionClosed(nil))
        let bye = d.feed(.line("logout"))
        #expect(exitStatus(bye) == .ok)
        #expect(bye.contains(.closePrivate(PrivateAttempt(1), reason: "alice logged out")))
        var e = Driver(reconnectingTo: [a])
        e.online()
        e.feed(.connectionClosed(nil))
        #expect(exitStatus(e.feed(.inputEnded)) == .ok)
    }

    @Test func aCertificateThatFailsOnReconnectStopsIt() {
        var d = Driver(reconnectingTo: [a, b])
        d.online()
        d.feed(.connectionClosed(nil))
        d.feed(.timerFired(.reconnect))
        let failed = d.feed(.serverConnectFailed(.tls(.certificateVerificationFailed("unknown CA"))))
        #expect(exitStatus(failed) == .certificateFailed)
        #expect(reconnectWaits(failed).isEmpty)
    }

    // MARK: passwd

    @Test func passwdReadsBothPasswordsUnseenSendsThemOnceAndReconnectsWithTheNewOne() {
        var d = Driver(reconnectingTo: [a])
        d.online()
        #expect(d.feed(.line("passwd")) == [.readLine(prompt: "Old password: ", secret: true)])
        #expect(d.feed(.line("password-alice")) == [.readLine(prompt: "New password: ", secret: true)])
        let change = d.feed(.line("brand-new-pw"))
        #expect(sent(change).map(\.0) == [.passwd(old: "password-alice", new: "brand-new-pw")])
        #expect(change.last == .readLine(prompt: "> ", secret: false))
        let id = sent(change)[0].1!
        let done = d.feed(.frame(.reply(.ok(id: id))))
        #expect(shown(done) == [.reply(.ok(id: id), command: .passwd)])
        #expect(Presenter.human(shown(done)[0]) == ["Your password has been changed"])
        d.feed(.connectionClosed(nil))
        d.feed(.timerFired(.reconnect))
        #expect(sent(d.feed(.serverConnected)).map(\.0) == [.login(username: "alice", password: "brand-new-pw")])
    }

    @Test func onATerminalTheNewPasswordIsAskedTwiceAndAMismatchSendsNothing() {
        var d = Driver(reconnectingTo: [a], confirm: true)
        d.online()
        d.feed(.line("passwd"))
        d.feed(.line("old-password"))
        #expect(d.feed(.line("new-password-1")) == [.readLine(prompt: "Retype new password: ", secret: true)])
        let mismatch = d.feed(.line("new-password-2"))
        #expect(sent(mismatch).isEmpty)
        #expect(shown(mismatch) == [.local(.clientError(
            code: "password_mismatch", message: "Error. The new passwords did not match; your password was not changed"))])
        d.feed(.line("passwd"))
        d.feed(.line("old-password"))
        d.feed(.line("new-password-1"))
        #expect(sent(d.feed(.line("new-password-1"))).map(\.0) == [.passwd(old: "old-password", new: "new-password-1")])
    }

    @Test func aWrongOldPasswordKeepsTheOldOneAndALockoutEndsWithoutReconnecting() {
        var d = Driver(reconnectingTo: [a])
        d.online()
        d.feed(.line("passwd"))
        d.feed(.line("not-my-password"))
        let id = sent(d.feed(.line("new-password"))).first!.1!
        let wrong = d.feed(.frame(.reply(.error(id: id, .wrongPassword))))
        #expect(shown(wrong).flatMap(Presenter.human) == ["Invalid Password. Your password was not changed"])
        d.feed(.line("passwd"))
        d.feed(.line("not-my-password"))
        let third = sent(d.feed(.line("new-password"))).first!.1!
        d.feed(.frame(.reply(.error(id: third, .accountLockedNow))))
        d.feed(.frame(.loggedOut(reason: .accountLocked)))
        let end = d.feed(.connectionClosed(nil))
        #expect(exitStatus(end) == .accountLocked)
        #expect(reconnectWaits(end).isEmpty)
        // A passwd whose answer never came: the reconnect tries the new password once the old is refused.
        var e = Driver(reconnectingTo: [a])
        e.online()
        e.feed(.line("passwd"))
        e.feed(.line("password-alice"))
        e.feed(.line("changed-maybe"))
        #expect(shown(e.feed(.connectionClosed(nil))).first == .local(.connection(.requestLost(command: "passwd"))))
        e.feed(.timerFired(.reconnect))
        let first = sent(e.feed(.serverConnected))[0]
        #expect(first.0 == .login(username: "alice", password: "password-alice"))
        let second = sent(e.feed(.frame(.reply(.error(id: first.1!, .wrongPassword)))))
        #expect(second.map(\.0) == [.login(username: "alice", password: "changed-maybe")])
        let back = e.feed(.frame(.reply(.ok(id: second[0].1!, .login(username: "alice", created: false)))))
        #expect(shown(back) == [.local(.connection(.reconnected(to: a, username: "alice")))])
    }

    @Test func passwdNeverTakesPasswordsFromTheLineAndStaysOutOfHistory() {
        #expect(UserCommand.parse("passwd") == .success(.passwd))
        #expect(UserCommand.parse("passwd old new") == .failure(.usage("Usage: passwd")))
        #expect(UserCommand.keepsOutOfHistory("  PASSWD secret"))
        #expect(UserCommand.keepsOutOfHistory("passwd"))
        #expect(!UserCommand.keepsOutOfHistory("message bob passwd"))
        #expect(UserCommand.helpText.contains("passwd"))
    }

    // MARK: --host lists

    @Test func hostListsParseWithDefaultPortsIPv6AndClearErrors() throws {
        #expect(try ServerEndpoint.parseList("a:3331,b:4000", defaultPort: 1) == [
            ServerEndpoint(host: "a", port: 3331), ServerEndpoint(host: "b", port: 4000),
        ])
        #expect(try ServerEndpoint.parseList("chat.example", defaultPort: 3331) == [ServerEndpoint(host: "chat.example", port: 3331)])
        #expect(try ServerEndpoint.parseList("[::1]:5000, ::1 ,127.0.0.1", defaultPort: 7) == [
            ServerEndpoint(host: "::1", port: 5000), ServerEndpoint(host: "::1", port: 7), ServerEndpoint(host: "127.0.0.1", port: 7),
        ])
        #expect(ServerEndpoint(host: "::1", port: 5000).description == "[::1]:5000")
        #expect(throws: ServerListError.emptyEntry) { try ServerEndpoint.parseList("a,,b", defaultPort: 1) }
        #expect(throws: ServerListError.badEntry("a:0", "port 0 is not in 1-65535")) { try ServerEndpoint.parseList("a:0", defaultPort: 1) }
        #expect(throws: ServerListError.badEntry("a:x1", "the port is not a number")) { try ServerEndpoint.parseList("a:x1", defaultPort: 1) }
        #expect(throws: ServerListError.badEntry(":3331", "the host is empty")) { try ServerEndpoint.parseList(":3331", defaultPort: 1) }
        #expect(throws: ServerListError.badEntry("[::1", "missing ']' after the IPv6 address")) { try ServerEndpoint.parseList("[::1", defaultPort: 1) }
        #expect(throws: ServerListError.duplicate("a:1")) { try ServerEndpoint.parseList("a:1,a", defaultPort: 1) }
        let many = (1...17).map { "h\($0)" }.joined(separator: ",")
        #expect(throws: ServerListError.tooMany(17)) { try ServerEndpoint.parseList(many, defaultPort: 1) }
    }
}
