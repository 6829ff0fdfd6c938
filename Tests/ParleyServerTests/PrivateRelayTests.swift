import NIOCore
import ParleyProtocol
import ParleyServer
import ParleyTestSupport
import Testing

private let fpA = String(repeating: "a1", count: 32)
private let fpB = String(repeating: "b2", count: 32)

extension TestChatClient {
    func nextPrivate(timeout: Double = 5) async -> ServerMessage? {
        await next(timeout: timeout) { message in
            switch message {
            case .privateRequest, .privateAccepted, .privateDeclined, .privateStarted, .privateStopped: true
            default: false
            }
        }
    }
}

@Suite("server: private-link introductions")
struct PrivateRelayTests {
    @Test func refusalsNeverRevealAnAddress() async throws {
        try await withTestServer { server in
            let alice = try await server.loggedIn("alice")
            let bob = try await server.loggedIn("bob")
            let carol = try await server.loggedIn("carol")
            _ = try await server.loggedIn("dave").request(.logout)
            #expect(try await alice.request(.startPrivate(user: "alice", fingerprint: fpA)).code == .cannotMessageSelf)
            #expect(try await alice.request(.startPrivate(user: "nobody", fingerprint: fpA)).code == .unknownUser)
            #expect(try await alice.request(.startPrivate(user: "dave", fingerprint: fpA)).code == .userOffline)
            #expect(try await carol.request(.block(user: "alice")).isOK)
            #expect(try await alice.request(.startPrivate(user: "carol", fingerprint: fpA)).code == .privateNotEnabled)
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).isOK)
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).code == .privateAlreadyActive)
            #expect(try await bob.request(.startPrivate(user: "alice", fingerprint: fpB)).code == .privateAlreadyActive)
            #expect(await bob.nextPrivate() == .privateRequest(from: "alice"))
            #expect(try await carol.request(.privateAnswer(user: "alice", accept: true, port: 4000, fingerprint: fpB)).code == .privateNoRequest)
            // No reply or event to alice so far carried a host.
            #expect(!alice.received.contains { if case .privateAccepted = $0 { true } else { false } })
        }
    }

    @Test func acceptRelaysAddressPortFingerprintsAndOneSessionId() async throws {
        try await withTestServer { server in
            let alice = try await server.loggedIn("alice")
            let bob = try await server.loggedIn("bob")
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).isOK)
            #expect(await bob.nextPrivate() == .privateRequest(from: "alice"))
            #expect(try await bob.request(.privateAnswer(user: "alice", accept: true, port: 40000, fingerprint: fpB)).isOK)
            guard case .privateStarted(let user, let fingerprint, let linkID)? = await bob.nextPrivate() else {
                Issue.record("bob got no privatestarted")
                return
            }
            #expect(user == "alice" && fingerprint == fpA)
            #expect(await alice.nextPrivate() == .privateAccepted(user: "bob", host: "127.0.0.1", port: 40000, fingerprint: fpB, linkID: linkID))
            #expect(linkID.count == 32)
            // Stopped from bob's side: alice is told, and a second stop is refused.
            #expect(try await bob.request(.stopPrivate(user: "alice")).isOK)
            #expect(await alice.nextPrivate() == .privateStopped(user: "bob", reason: "bob stopped private messaging"))
            let again = try await bob.request(.stopPrivate(user: "alice"))
            #expect(again.code == .privateNotEnabled && again.errorMessage == "Error. Private messaging to alice not enabled")
        }
    }

    @Test func declineAndNoAnswerInTime() async throws {
        // A decline, with the default answer time (a short one would race bob's answer on a loaded machine).
        try await withTestServer { server in
            let alice = try await server.loggedIn("alice")
            let bob = try await server.loggedIn("bob")
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).isOK)
            #expect(await bob.nextPrivate() == .privateRequest(from: "alice"))
            #expect(try await bob.request(.privateAnswer(user: "alice", accept: false, port: nil, fingerprint: nil)).isOK)
            #expect(await alice.nextPrivate() == .privateDeclined(user: "bob"))
            let late = try await bob.request(.privateAnswer(user: "alice", accept: true, port: 1, fingerprint: fpB))
            #expect(late.code == .privateNoRequest)
        }
        // No answer within the (short) answer time.
        try await withTestServer({ $0.privateAnswerTimeout = .milliseconds(500) }) { server in
            let alice = try await server.loggedIn("alice")
            let bob = try await server.loggedIn("bob")
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).isOK)
            #expect(await bob.nextPrivate() == .privateRequest(from: "alice"))
            #expect(await alice.nextPrivate(timeout: 3) == .privateDeclined(user: "bob"))
            #expect(await bob.nextPrivate() == .privateStopped(user: "alice", reason: "no answer in time"))
            #expect(try await bob.request(.privateAnswer(user: "alice", accept: true, port: 1, fingerprint: fpB)).code == .privateNoRequest)
        }
    }

    @Test func logoutDisconnectAndBlockEndTheSessionAndTellWhy() async throws {
        try await withTestServer { server in
            func pair(_ a: TestChatClient, _ b: TestChatClient, _ bName: String, _ aName: String) async throws {
                #expect(try await a.request(.startPrivate(user: bName, fingerprint: fpA)).isOK)
                #expect(await b.nextPrivate() == .privateRequest(from: aName))
                #expect(try await b.request(.privateAnswer(user: aName, accept: true, port: 5000, fingerprint: fpB)).isOK)
                _ = await b.nextPrivate()
                _ = await a.nextPrivate()
            }
            let alice = try await server.loggedIn("alice")
            var bob = try await server.loggedIn("bob")
            try await pair(alice, bob, "bob", "alice")
            _ = try await bob.request(.logout)
            #expect(await alice.nextPrivate() == .privateStopped(user: "bob", reason: "bob logged out"))
            bob = try await server.loggedIn("bob")
            try await pair(alice, bob, "bob", "alice")
            await bob.abort()
            // A set-up session outlives a lost server connection (the link is the clients' own and
            // bob's client reconnects): alice hears bob went offline, not that the session ended.
            // (privatestopped would go out before the presence: once the second "offline" is in, it would be too.)
            #expect(await eventually { alice.received.count(where: { $0 == .presence(user: "bob", online: false) }) == 2 })
            let lost = ServerMessage.privateStopped(user: "bob", reason: "bob lost the connection to the server")
            #expect(!alice.received.contains(lost))
            // A request still waiting for an answer does end with the connection.
            bob = try await server.loggedIn("bob")
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).isOK)
            #expect(await bob.nextPrivate() == .privateRequest(from: "alice"))
            await bob.abort()
            #expect(await alice.nextPrivate() == lost)
            bob = try await server.loggedIn("bob")
            try await pair(alice, bob, "bob", "alice")
            #expect(try await bob.request(.block(user: "alice")).isOK)
            #expect(await alice.nextPrivate() == .privateStopped(user: "bob", reason: "blocked"))
            #expect(await bob.nextPrivate() == .privateStopped(user: "alice", reason: "blocked"))
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).code == .privateNotEnabled)
        }
    }

    @Test func atMostFourPendingRequestsPerUserMadeOrReceived() async throws {
        try await withTestServer { server in
            var users: [String: TestChatClient] = [:]
            for name in ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "u1", "u2", "u3", "u4", "u5"] {
                users[name] = try await server.loggedIn(name)
            }
            let alice = try #require(users["alice"])
            for target in ["bob", "carol", "dave", "erin"] {
                #expect(try await alice.request(.startPrivate(user: target, fingerprint: fpA)).isOK)
            }
            let fifth = try await alice.request(.startPrivate(user: "frank", fingerprint: fpA))
            #expect(fifth.code == .tooManyRequests)
            #expect(fifth.errorMessage == "Error. You have 4 private requests waiting for an answer; wait for one to end")
            // Requests waiting on a user count too: grace can be asked by four, not five.
            for requester in ["u1", "u2", "u3", "u4"] {
                #expect(try await users[requester]!.request(.startPrivate(user: "grace", fingerprint: fpA)).isOK)
            }
            let crowded = try await users["u5"]!.request(.startPrivate(user: "grace", fingerprint: fpA))
            #expect(crowded.code == .tooManyRequests)
            #expect(crowded.errorMessage == "Error. grace has too many private requests waiting; try again later")
            #expect(try await users["grace"]!.request(.startPrivate(user: "frank", fingerprint: fpA)).code == .tooManyRequests)
            // An answer frees a slot.
            let bob = try #require(users["bob"])
            #expect(await bob.nextPrivate() == .privateRequest(from: "alice"))
            #expect(try await bob.request(.privateAnswer(user: "alice", accept: false, port: nil, fingerprint: nil)).isOK)
            #expect(try await alice.request(.startPrivate(user: "frank", fingerprint: fpA)).isOK)
        }
    }

    @Test func idleTimeoutEndsTheSession() async throws {
        // 5 s: bob's login, the introduction and his answer must fit inside one timeout even when the
        // whole suite shares two cores; alice then stays busy until bob's timeout shows, however late.
        try await withTestServer({ $0.idleTimeout = .seconds(5) }) { server in
            let alice = try await server.loggedIn("alice")
            let bob = try await server.loggedIn("bob")
            #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fpA)).isOK)
            #expect(await bob.nextPrivate() == .privateRequest(from: "alice"))
            #expect(try await bob.request(.privateAnswer(user: "alice", accept: true, port: 5000, fingerprint: fpB)).isOK)
            // alice keeps busy with `active` (what a private chat sends); bob goes quiet and times out.
            var stopped: ServerMessage?
            let deadline = ContinuousClock.now + .seconds(20)
            while stopped == nil, ContinuousClock.now < deadline {
                try await alice.send(.active)
                stopped = await alice.next(timeout: 0.3) { if case .privateStopped = $0 { true } else { false } }
            }
            #expect(stopped == .privateStopped(user: "bob", reason: "bob timed out"))
            #expect(await bob.waitForClose())
            #expect(!alice.isClosed)
        }
    }
}
