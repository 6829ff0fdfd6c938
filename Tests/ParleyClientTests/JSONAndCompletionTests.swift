import ParleyClient
import ParleyProtocol
import Testing

@Suite("JSON output")
struct JSONOutputTests {
    func json(_ output: Output) -> String {
        let lines = Presenter.render(output, format: .json)
        #expect(lines.count == 1)
        return lines[0]
    }

    @Test func eventsAreOneObjectPerLine() {
        #expect(json(.event(.message(from: "alice", text: "hi"))) == #"{"event":"message","from":"alice","text":"hi"}"#)
        #expect(json(.event(.message(from: "a", text: "x", delivery: 7, sent: 9)))
            == #"{"delivery":7,"event":"message","from":"a","sent":9,"text":"x"}"#)
        #expect(json(.event(.broadcast(from: "a", text: "line1\nline2"))) == #"{"event":"broadcast","from":"a","text":"line1\nline2"}"#)
        #expect(json(.event(.presence(user: "bob", online: false))) == #"{"event":"presence","online":false,"user":"bob"}"#)
        #expect(json(.event(.loggedOut(reason: .timeout)))
            == #"{"event":"loggedout","message":"You have been logged out due to inactivity.","reason":"timeout"}"#)
        #expect(json(.event(.error(code: .frameTooLarge, message: "big"))) == #"{"code":"frame_too_large","event":"error","message":"big"}"#)
    }

    @Test func repliesNameTheirCommand() {
        #expect(json(.reply(.ok(id: 2, .users(["bob"])), command: .whoelse))
            == #"{"command":"whoelse","event":"reply","ok":true,"users":["bob"]}"#)
        #expect(json(.reply(.ok(id: 2, .broadcast(unreachable: true)), command: .broadcast(text: "x")))
            == #"{"command":"broadcast","event":"reply","ok":true,"unreachable":true}"#)
        #expect(json(.reply(.error(id: 2, .unknownUser), command: .message(to: "zed", text: "x")))
            == #"{"code":"unknown_user","command":"message","event":"reply","message":"Error. Invalid user","ok":false,"to":"zed"}"#)
        #expect(json(.login(.refused(code: .wrongPassword, message: "m")))
            == #"{"code":"wrong_password","command":"login","event":"reply","message":"Invalid Password. Please try again","ok":false}"#)
        #expect(json(.login(.loggedIn(username: "Al", created: true)))
            == #"{"command":"login","created":true,"event":"reply","ok":true,"username":"Al"}"#)
    }

    @Test func localOutputIsJSONToo() {
        #expect(json(.local(.usage("Usage: block USER"))) == #"{"code":"usage","event":"error","message":"Usage: block USER"}"#)
        #expect(json(.local(.help)).hasPrefix(#"{"commands":["message","broadcast""#))
        #expect(json(.local(.clientError(code: "connection_lost", message: "gone")))
            == #"{"code":"connection_lost","event":"error","message":"gone"}"#)
    }
}

@Suite("Completion")
struct CompletionTests {
    let users: Set<String> = ["bob", "Bea", "carol"]

    @Test func commandNames() {
        let r = Completion.candidates(beforeCursor: "who", users: users)
        #expect(r.candidates == ["whoelse", "whoelsesince"])
        #expect(r.commonSuffix == "else")
        #expect(Completion.candidates(beforeCursor: "bro", users: users).candidates == ["broadcast"])
        #expect(Completion.candidates(beforeCursor: "", users: users).candidates.count == UserCommand.allNames.count)
        #expect(Completion.candidates(beforeCursor: "zz", users: users).candidates.isEmpty)
    }

    @Test func usernamesAfterUserCommands() {
        #expect(Completion.candidates(beforeCursor: "message b", users: users).candidates == ["Bea", "bob"])
        #expect(Completion.candidates(beforeCursor: "block c", users: users).candidates == ["carol"])
        #expect(Completion.candidates(beforeCursor: "block c", users: users).commonSuffix == "arol")
        #expect(Completion.candidates(beforeCursor: "unblock ", users: users).candidates.count == 3)
        // No usernames for commands that take none, nor inside the message text.
        #expect(Completion.candidates(beforeCursor: "broadcast b", users: users).candidates.isEmpty)
        #expect(Completion.candidates(beforeCursor: "message bob b", users: users).candidates.isEmpty)
    }

    @Test func onlineSetFollowsPresenceAndWhoelse() {
        var online = OnlineUsers()
        online.apply(.presence(user: "bob", online: true))
        online.apply(.presence(user: "Carol", online: true))
        online.apply(.message(from: "zed", text: "x"))
        #expect(online.names == ["bob", "Carol"])
        online.apply(.presence(user: "carol", online: false))
        #expect(online.names == ["bob"])
        online.apply(reply: .ok(id: 1, .users(["dave"])), command: .whoelse)
        #expect(online.names == ["dave"])
        online.apply(reply: .ok(id: 1, .users(["old"])), command: .whoelsesince(seconds: 9))
        #expect(online.names == ["dave"])
    }

    @Test func exitStatusMapping() {
        #expect(ChatClient.exitStatus(for: .tls(.certificateVerificationFailed("x"))) == .certificateFailed)
        #expect(ChatClient.exitStatus(for: .connectionClosed) == .connectionLost)
        #expect(ChatClient.exitStatus(for: .unsupportedVersion(server: 0)) == .otherError)
        #expect(ExitStatus.allCases.map(\.rawValue) == [0, 64, 65, 66, 67, 68, 69, 70, 71])
    }
}
