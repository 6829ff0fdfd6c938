import Foundation
import NIOCore
import Testing
@testable import ParleyServer

@Suite("admin socket protocol (no I/O)")
struct AdminProtocolTests {
    @Test func requestsParseAndPrintBack() throws {
        #expect(try AdminRequest.parse("who") == .who)
        #expect(try AdminRequest.parse("  kick   Alice ") == .kick("Alice"))
        #expect(try AdminRequest.parse("disable bob") == .disable("bob"))
        #expect(try AdminRequest.parse("reload") == .reload)
        for request in [AdminRequest.who, .kick("Alice"), .disable("bob"), .reload] {
            #expect(try AdminRequest.parse(request.line) == request)
        }
    }

    @Test func badRequestsGetClearCodes() {
        #expect(throws: AdminError(.unknownCommand, "unknown command; known: who, kick NAME, disable NAME, reload")) {
            try AdminRequest.parse("shutdown now")
        }
        #expect(throws: AdminError(.unknownCommand, "empty request")) { try AdminRequest.parse("   ") }
        #expect(throws: AdminError(.badRequest, "usage: kick NAME")) { try AdminRequest.parse("kick") }
        #expect(throws: AdminError(.badRequest, "usage: disable NAME")) { try AdminRequest.parse("disable a b") }
        #expect(throws: AdminError(.badRequest, "who takes no arguments")) { try AdminRequest.parse("who all") }
        #expect(throws: AdminError(.invalidUsername, "invalid username -x")) { try AdminRequest.parse("kick -x") }
    }

    @Test func repliesRoundTripAndACutOffReplyIsNoReply() {
        let replies: [AdminReply] = [
            .ok(), .ok("kicked alice"), .ok("2 users online", body: ["NAME  ADDRESS", "alice  127.0.0.1:1"]),
            .error(AdminError(.notOnline, "alice is not logged in")),
        ]
        for reply in replies {
            let lines = reply.encoded.split(separator: "\n").map(String.init)
            #expect(reply.encoded.hasSuffix("\n"))
            #expect(AdminReply.decode(lines: lines) == reply)
        }
        #expect(AdminReply.decode(lines: []) == nil)
        #expect(AdminReply.decode(lines: ["NAME  ADDRESS"]) == nil, "a body without its status line was cut off")
        #expect(AdminReply.decode(lines: ["error shiny_new_code something"]) ==
                .error(AdminError(.internal, "something")), "an unknown code is still an error")
    }

    @Test func onlyTheServersUserOrRootMayConnect() {
        #expect(AdminAccess.allows(peer: 1000, server: 1000))
        #expect(AdminAccess.allows(peer: 0, server: 1000))
        #expect(!AdminAccess.allows(peer: 1001, server: 1000))
        #expect(!AdminAccess.allows(peer: nil, server: 1000), "an unknown peer is refused")
        #expect(!AdminAccess.allows(peer: nil, server: 0))
    }

    @Test func theWhoTableHasAHeaderAndAlignedColumns() {
        let login = Date(timeIntervalSince1970: 1_700_000_000)
        let lines = WhoTable.lines([
            OnlineSession(name: "bob", address: "127.0.0.2:40000", loginTime: login, idle: .seconds(125)),
            OnlineSession(name: "Alice", address: "127.0.0.1:5", loginTime: login, idle: .seconds(3)),
        ])
        #expect(lines == [
            "NAME   ADDRESS          LOGIN (UTC)           IDLE",
            "Alice  127.0.0.1:5      2023-11-14T22:13:20Z  3s",
            "bob    127.0.0.2:40000  2023-11-14T22:13:20Z  2m05s",
        ])
        #expect(WhoTable.duration(seconds: 7_500) == "2h05m")
    }
}
