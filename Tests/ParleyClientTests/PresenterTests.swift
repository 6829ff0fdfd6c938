import ParleyClient
import ParleyProtocol
import Testing

@Suite("Human wording")
struct PresenterTests {
    func human(_ output: Output) -> [String] { Presenter.render(output, format: .human) }

    @Test func loginWording() {
        #expect(human(.login(.loggedIn(username: "alice", created: false)))
            == ["Welcome to the greatest messaging application ever!"])
        #expect(human(.login(.loggedIn(username: "alice", created: true)))
            == ["Account created for alice.", "Welcome to the greatest messaging application ever!"])
        #expect(human(.login(.refused(code: .wrongPassword, message: "x"))) == ["Invalid Password. Please try again"])
        #expect(human(.login(.refused(code: .accountLockedNow, message: "x")))
            == ["Invalid Password. Your account has been blocked. Please try again later"])
        #expect(human(.login(.refused(code: .accountLocked, message: "x")))
            == ["Your account is blocked due to multiple login failures. Please try again later"])
        #expect(human(.login(.refused(code: .registrationClosed, message: "Closed here"))) == ["Closed here"])
        #expect(human(.login(.refused(code: .accountDisabled, message: ""))) == ["Error. This account has been disabled by the server operator"])
    }

    @Test func eventWording() {
        #expect(human(.event(.message(from: "alice", text: "hello"))) == ["alice: hello"])
        #expect(human(.event(.message(from: "alice", text: "hello", delivery: 3, sent: 5))) == ["alice: hello"])
        #expect(human(.event(.broadcast(from: "alice", text: "hello"))) == ["alice: hello"])
        #expect(human(.event(.presence(user: "bob", online: true))) == ["bob logged in"])
        #expect(human(.event(.presence(user: "bob", online: false))) == ["bob logged out"])
        #expect(human(.event(.loggedOut(reason: .timeout))) == ["You have been logged out due to inactivity."])
        #expect(human(.event(.loggedOut(reason: .logout))) == [])
        #expect(human(.event(.loggedOut(reason: .serverShutdown))).first?.contains("shutting down") == true)
        #expect(human(.event(.loggedOut(reason: .kicked))) == ["You have been logged out by the server operator."])
        #expect(human(.event(.loggedOut(reason: .disabled)))
            == ["Your account has been disabled by the server operator. You have been logged out."])
        #expect(human(.event(.error(code: .frameTooLarge, message: "too big"))) == ["too big"])
        #expect(human(.event(.hello(version: 1, server: "s"))) == [])
        #expect(human(.event(.privateDeclined(user: "bob"))) == [])
    }

    @Test func replyWording() {
        let ok = Reply.ok(id: 1)
        #expect(human(.reply(ok, command: .block(user: "bob"))) == ["bob is blocked"])
        #expect(human(.reply(ok, command: .unblock(user: "bob"))) == ["bob is unblocked"])
        #expect(human(.reply(ok, command: .message(to: "bob", text: "hi"))) == [])
        #expect(human(.reply(.error(id: 1, .cannotBlockSelf), command: .block(user: "me"))) == ["Error. Cannot block self"])
        #expect(human(.reply(.error(id: 1, .notBlocked), command: .unblock(user: "bob"))) == ["Error. bob was not blocked"])
        #expect(human(.reply(.error(id: 1, .unknownUser, message: "other"), command: .message(to: "zed", text: "x")))
            == ["Error. Invalid user"])
        #expect(human(.reply(.error(id: 1, .recipientBlockedYou), command: .message(to: "bob", text: "x")))
            == ["Your message could not be delivered as the recipient has blocked you"])
        #expect(human(.reply(.ok(id: 1, .broadcast(unreachable: true)), command: .broadcast(text: "x")))
            == ["Your message could not be delivered to some recipients"])
        #expect(human(.reply(.ok(id: 1, .broadcast(unreachable: false)), command: .broadcast(text: "x"))) == [])
        #expect(human(.reply(.ok(id: 1, .users(["bob", "Carol"])), command: .whoelse)) == ["bob", "Carol"])
        #expect(human(.reply(.ok(id: 1, .users([])), command: .whoelsesince(seconds: 5))) == [])
        #expect(human(.reply(.error(id: 1, .rateLimited, message: "slow down!"), command: .whoelse)) == ["slow down!"])
    }

    @Test func localWording() {
        #expect(human(.local(.help)).joined(separator: "\n") == UserCommand.helpText)
        #expect(human(.local(.usage("Usage: block USER"))) == ["Usage: block USER"])
    }
}

@Suite("Input lines to requests")
struct CommandMapperTests {
    @Test func mapsCommandsToRequests() {
        #expect(CommandMapper.action(for: "message bob hi there")
            == .send(.message(to: "bob", text: "hi there"), command: .message(to: "bob", text: "hi there")))
        #expect(CommandMapper.action(for: "broadcast  hey") == .send(.broadcast(text: "hey"), command: .broadcast(text: "hey")))
        #expect(CommandMapper.action(for: "whoelse") == .send(.whoelse, command: .whoelse))
        #expect(CommandMapper.action(for: "whoelsesince 60") == .send(.whoelsesince(seconds: 60), command: .whoelsesince(seconds: 60)))
        #expect(CommandMapper.action(for: "BLOCK eve") == .send(.block(user: "eve"), command: .block(user: "eve")))
        #expect(CommandMapper.action(for: "unblock eve") == .send(.unblock(user: "eve"), command: .unblock(user: "eve")))
        #expect(CommandMapper.action(for: "logout") == .send(.logout, command: .logout))
    }

    @Test func localAnswers() {
        #expect(CommandMapper.action(for: "   ") == .nothing)
        #expect(CommandMapper.action(for: "help") == .local(.help))
        #expect(CommandMapper.action(for: "message bob") == .local(.usage("Usage: message USER TEXT")))
        #expect(CommandMapper.action(for: "whoelsesince soon") == .local(.usage("Usage: whoelsesince SECONDS")))
        guard case .local(.invalidCommand(let text)) = CommandMapper.action(for: "frobnicate") else {
            Issue.record("expected invalid command")
            return
        }
        #expect(text.hasPrefix("Error. Invalid command"))
        guard case .local(.invalidCommand(let hint)) = CommandMapper.action(for: "mesage bob hi") else {
            Issue.record("expected invalid command")
            return
        }
        #expect(hint.contains("'message'"))
        guard case .privateCommand(.startPrivate(user: "bob")) = CommandMapper.action(for: "startprivate bob") else {
            Issue.record("private-session commands should go to the private-session side")
            return
        }
    }
}
