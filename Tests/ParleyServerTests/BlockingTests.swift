import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

@Suite("Blocking, end to end over TLS")
struct BlockingTests {
    @Test("block errors: self, unknown user, twice; unblock of someone not blocked")
    func blockErrors() async throws {
        try await withTestServer { server in
            let alice = try await server.loggedIn("alice")
            _ = try await server.loggedIn("bob")
            let selfBlock = try await alice.request(.block(user: "Alice"))
            #expect(selfBlock.code == .cannotBlockSelf)
            #expect(selfBlock.errorMessage == "Error. Cannot block self")
            #expect(try await alice.request(.block(user: "ghost")).code == .unknownUser)
            #expect(try await alice.request(.unblock(user: "bob")).code == .notBlocked)
            #expect(try await alice.request(.block(user: "bob")).isOK)
            #expect(try await alice.request(.block(user: "BOB")).code == .alreadyBlocked)
            #expect(try await alice.request(.unblock(user: "bob")).isOK)
            #expect(try await alice.request(.unblock(user: "bob")).code == .notBlocked)
        }
    }

    @Test("when A blocks B: B's messages are refused, B's broadcasts skip A, B hears no presence of A, A is hidden from B")
    func blockEffects() async throws {
        try await withTestServer { server in
            let a = try await server.loggedIn("a-user")
            let b = try await server.loggedIn("b-user")
            let c = try await server.loggedIn("c-user")
            #expect(try await a.request(.block(user: "b-user")).isOK)

            let refused = try await b.request(.message(to: "a-user", text: "hi"))
            #expect(refused.code == .recipientBlockedYou)
            #expect(refused.errorMessage == "Your message could not be delivered as the recipient has blocked you")
            #expect(await a.nextMessage(timeout: 0.3) == nil)

            #expect(try await b.request(.broadcast(text: "to all")).outcome == .ok(.broadcast(unreachable: true)))
            #expect(await c.nextBroadcast()?.text == "to all")
            #expect(await a.nextBroadcast(timeout: 0.3) == nil)

            #expect(try await b.request(.whoelse).users == ["c-user"])
            #expect(try await b.request(.whoelsesince(seconds: 600)).users == ["c-user"])
            #expect(try await c.request(.whoelse).users == ["a-user", "b-user"])

            // A's logout and login are not announced to B, but are to C.
            try await a.request(.logout)
            #expect(await c.nextPresence(of: "a-user", online: false))
            let a2 = try await server.loggedIn("a-user")
            #expect(await c.nextPresence(of: "a-user", online: true))
            #expect(await b.next(timeout: 0.3) { if case .presence(let user, _) = $0 { user == "a-user" } else { false } } == nil)

            // The block is durable and also stops offline messages.
            try await server.restart()
            let b2 = try await server.loggedIn("b-user")
            #expect(try await b2.request(.message(to: "a-user", text: "stored?")).code == .recipientBlockedYou)
            _ = a2
        }
    }

    @Test("unblock restores messages, broadcasts and visibility")
    func unblockRestores() async throws {
        try await withTestServer { server in
            let a = try await server.loggedIn("anna")
            let b = try await server.loggedIn("ben")
            #expect(try await a.request(.block(user: "ben")).isOK)
            #expect(try await b.request(.message(to: "anna", text: "x")).code == .recipientBlockedYou)
            #expect(try await a.request(.unblock(user: "ben")).isOK)
            #expect(try await b.request(.message(to: "anna", text: "back")).isOK)
            #expect(await a.nextMessage()?.text == "back")
            #expect(try await b.request(.whoelse).users == ["anna"])
        }
    }
}
