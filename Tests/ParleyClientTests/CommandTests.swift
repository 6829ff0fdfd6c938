import Testing
@testable import ParleyCommands

@Suite struct UserCommandTests {
    @Test(arguments: [
        ("message bob hello", UserCommand.message(to: "bob", text: "hello")),
        ("message bob   hi  there  you ", .message(to: "bob", text: "hi  there  you ")),
        ("  MESSAGE\tbob x\r\n", .message(to: "bob", text: "x")),
        ("broadcast hello   world", .broadcast(text: "hello   world")),
        ("whoelse", .whoelse), ("whoelse  ", .whoelse),
        ("whoelsesince 60", .whoelsesince(seconds: 60)), ("whoelsesince 0", .whoelsesince(seconds: 0)),
        ("block eve", .block(user: "eve")), ("unblock eve", .unblock(user: "eve")),
        ("logout", .logout), ("help", .help),
        ("startprivate bob", .startPrivate(user: "bob")),
        ("private bob psst  secret", .privateMessage(to: "bob", text: "psst  secret")),
        ("stopprivate bob", .stopPrivate(user: "bob")), ("verify bob", .verify(user: "bob")),
    ])
    func parses(_ line: String, _ expected: UserCommand) {
        #expect(UserCommand.parse(line) == .success(expected))
    }

    @Test(arguments: [
        ("message", "Usage: message USER TEXT"), ("message bob", "Usage: message USER TEXT"),
        ("message bob    ", "Usage: message USER TEXT"), ("broadcast", "Usage: broadcast TEXT"),
        ("broadcast   ", "Usage: broadcast TEXT"), ("whoelse now", "Usage: whoelse"),
        ("whoelsesince", "Usage: whoelsesince SECONDS"), ("whoelsesince -5", "Usage: whoelsesince SECONDS"),
        ("whoelsesince 5s", "Usage: whoelsesince SECONDS"), ("whoelsesince 1 2", "Usage: whoelsesince SECONDS"),
        ("whoelsesince 99999999999999999999", "Usage: whoelsesince SECONDS"),
        ("block", "Usage: block USER"), ("block a b", "Usage: block USER"), ("unblock", "Usage: unblock USER"),
        ("logout now", "Usage: logout"), ("help me", "Usage: help"),
        ("startprivate", "Usage: startprivate USER"), ("private bob", "Usage: private USER TEXT"),
        ("stopprivate", "Usage: stopprivate USER"), ("verify", "Usage: verify USER"),
    ])
    func usageErrors(_ line: String, _ usage: String) {
        #expect(UserCommand.parse(line) == .failure(.usage(usage)))
    }

    @Test func unknownCommandHints() {
        #expect(UserCommand.parse("mesage bob hi") == .failure(.unknownCommand("mesage", suggestion: "message")))
        #expect(UserCommand.parse("brodcast x") == .failure(.unknownCommand("brodcast", suggestion: "broadcast")))
        #expect(UserCommand.parse("startp") == .failure(.unknownCommand("startp", suggestion: "startprivate")))
        #expect(UserCommand.parse("xyzzy") == .failure(.unknownCommand("xyzzy", suggestion: nil)))
        #expect(CommandParseError.unknownCommand("xyzzy", suggestion: nil).message
            == "Error. Invalid command (type help for the list of commands)")
        #expect(CommandParseError.unknownCommand("mesage", suggestion: "message").message
            == "Error. Invalid command. Did you mean 'message'? (type help for the list of commands)")
    }

    @Test func blankLines() {
        #expect(UserCommand.parse("") == .failure(.empty))
        #expect(UserCommand.parse("  \t \n") == .failure(.empty))
    }

    @Test func helpAndNames() {
        #expect(UserCommand.allNames.count == 13)
        let lines = UserCommand.helpText.split(separator: "\n")
        #expect(lines.count == UserCommand.allNames.count)
        for name in UserCommand.allNames {
            #expect(lines.contains { $0.hasPrefix("  " + name + " ") }, "help lists \(name)")
            #expect(UserCommand.usage(of: name)?.hasPrefix("Usage: " + name) == true)
        }
    }

    @Test func editDistance() {
        #expect(UserCommand.editDistance(Array("kitten".utf8), Array("sitting".utf8)) == 3)
        #expect(UserCommand.editDistance([], Array("abc".utf8)) == 3)
        #expect(UserCommand.editDistance(Array("abc".utf8), []) == 3)
    }
}

