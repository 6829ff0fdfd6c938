import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

private let fingerprintA = String(repeating: "a1", count: 32)
private let fingerprintB = String(repeating: "b2", count: 32)

/// Real `parley-server` processes on one throwaway PostgreSQL database, clients over real TLS:
/// what one server does, several do together.
@Suite("cluster: several parley-server nodes on one PostgreSQL database", .serialized)
struct ClusterEndToEndTests {
    @Test func presenceWhoelseMessagesAndBroadcastsCrossNodes() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1)
        #expect(await alice.nextPresence(of: "bob", online: true), "a login on node1 is seen on node0")
        #expect(try await alice.whoelseBecomes(["bob"]))
        #expect(try await bob.whoelseBecomes(["alice"]))
        #expect(try await bob.request(.whoelsesince(seconds: 60)).users == ["alice"])

        #expect(try await alice.request(.message(to: "bob", text: "hi bob")).isOK)
        let live = await bob.nextMessage()
        #expect(live?.from == "alice" && live?.text == "hi bob")
        let delivery = try #require(live?.delivery, "a cross-node message is stored until acked")
        #expect(try await bob.request(.ack(delivery: delivery)).isOK)

        #expect(try await bob.request(.broadcast(text: "hello all")).isOK)
        let heard = await alice.nextBroadcast()
        #expect(heard?.from == "bob" && heard?.text == "hello all")

        let second = try await cluster.nodes[0].client()
        #expect(try await second.login("bob", "password-bob").code == .alreadyOnline, "one login per user across nodes")

        #expect(try await bob.request(.logout).isOK)
        #expect(await alice.nextPresence(of: "bob", online: false))
        #expect(try await alice.whoelseBecomes([]))
        #expect(try await alice.request(.whoelsesince(seconds: 60)).users == ["bob"])
    }

    @Test func anOfflineMessageIsDeliveredOnceAtTheNextLoginOnAnotherNode() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let carol = try await cluster.loggedIn("carol", on: 1)
        #expect(try await carol.request(.logout).isOK)
        let alice = try await cluster.loggedIn("alice", on: 0)
        #expect(try await alice.request(.message(to: "carol", text: "while you were out")).isOK)

        let again = try await cluster.loggedIn("carol", on: 1)
        let stored = await again.nextMessage()
        #expect(stored?.text == "while you were out")
        #expect(try await again.request(.ack(delivery: try #require(stored?.delivery))).isOK)
        #expect(try await again.request(.logout).isOK)

        let third = try await cluster.loggedIn("carol", on: 0)
        #expect(await third.nextMessage(timeout: 1) == nil, "acked: never delivered again")
    }

    @Test func blocksActAcrossNodes() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1)
        #expect(try await alice.whoelseBecomes(["bob"]))
        #expect(try await bob.request(.block(user: "alice")).isOK)
        #expect(try await alice.whoelseBecomes([]), "whoever blocks alice is hidden from her")
        #expect(try await alice.request(.message(to: "bob", text: "x")).code == .recipientBlockedYou)
        let reply = try await alice.request(.broadcast(text: "anyone?"))
        #expect(reply.outcome == .ok(.broadcast(unreachable: true)))
        #expect(await bob.nextBroadcast(timeout: 1) == nil)
        #expect(try await bob.request(.logout).isOK)
        #expect(await alice.nextPresence(of: "bob", online: false, timeout: 1) == false, "presence hidden by the block")
        let back = try await cluster.loggedIn("bob", on: 1)
        #expect(try await back.request(.unblock(user: "alice")).isOK)
        #expect(try await alice.whoelseBecomes(["bob"]))
        #expect(try await alice.request(.broadcast(text: "again")).outcome == .ok(.broadcast(unreachable: false)))
        #expect(await back.nextBroadcast()?.text == "again")
    }

    @Test func aLockoutHoldsOnEveryNode() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let first = try await cluster.loggedIn("dave", on: 0)
        #expect(try await first.request(.logout).isOK)
        for _ in 0..<3 {
            let client = try await cluster.nodes[0].client()
            _ = try await client.login("dave", "wrong-password")
        }
        let elsewhere = try await cluster.nodes[1].client(from: "127.0.0.2")
        #expect(try await elsewhere.login("dave", "password-dave").code == .accountLocked)
    }

    @Test func startPrivateIsIntroducedAcrossNodes() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1, from: "127.0.0.3")
        #expect(try await alice.whoelseBecomes(["bob"]))
        #expect(try await alice.request(.startPrivate(user: "bob", fingerprint: fingerprintA)).isOK)
        #expect(await bob.next { $0 == .privateRequest(from: "alice") } != nil)
        #expect(try await bob.request(.privateAnswer(user: "alice", accept: true, port: 4242, fingerprint: fingerprintB)).isOK)
        let started = await bob.next { if case .privateStarted = $0 { true } else { false } }
        guard case .privateStarted(_, let fingerprint, let linkID)? = started else {
            Issue.record("bob was not told the link started")
            return
        }
        #expect(fingerprint == fingerprintA)
        let accepted = await alice.next { if case .privateAccepted = $0 { true } else { false } }
        #expect(accepted == .privateAccepted(user: "bob", host: "127.0.0.3", port: 4242, fingerprint: fingerprintB, linkID: linkID),
                "alice gets bob's address as bob's node saw it")
        #expect(try await alice.request(.stopPrivate(user: "bob")).isOK)
        #expect(await bob.next { if case .privateStopped(let user, _) = $0 { user == "alice" } else { false } } != nil)
    }

    @Test func aStartPrivateRefusedOnTheTargetsNodeIsTheReplysErrorAsOnOneNode() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let bob = try await cluster.loggedIn("bob", on: 1)
        // Four requests wait for bob (the limit per user); his node alone knows how many.
        for name in ["carol", "dave", "erin", "frank"] {
            let requester = try await cluster.loggedIn(name, on: 0)
            #expect(try await requester.whoelseBecomes(["bob"] + ["carol", "dave", "erin", "frank"].prefix { $0 != name }))
            #expect(try await requester.request(.startPrivate(user: "bob", fingerprint: fingerprintA)).isOK, "\(name) is filed")
            #expect(await bob.next { $0 == .privateRequest(from: name) } != nil)
        }
        let grace = try await cluster.loggedIn("grace", on: 0)
        #expect(try await grace.whoelseBecomes(["bob", "carol", "dave", "erin", "frank"]))
        let refused = try await grace.request(.startPrivate(user: "bob", fingerprint: fingerprintA))
        #expect(refused.code == .tooManyRequests, "\(refused)")
        if case .error(_, let message) = refused.outcome {
            #expect(message == "Error. bob has too many private requests waiting; try again later")
        }
        #expect(await bob.next(timeout: 0.5) { $0 == .privateRequest(from: "grace") } == nil, "bob is not asked")
        // grace's side of the request is gone too: once bob has room, she can ask again.
        #expect(try await bob.request(.privateAnswer(user: "carol", accept: false, port: nil, fingerprint: nil)).isOK)
        #expect(try await grace.request(.startPrivate(user: "bob", fingerprint: fingerprintA)).isOK)
        #expect(await bob.next { $0 == .privateRequest(from: "grace") } != nil)
    }

    @Test func aKilledNodesUsersGoOfflineAndCanLogInElsewhereWithNothingLost() async throws {
        let cluster = try await TestCluster.start(nodes: 3)
        defer { cluster.stop() }
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1)
        let carol = try await cluster.loggedIn("carol", on: 2)
        #expect(try await alice.whoelseBecomes(["bob", "carol"]))
        // Acknowledged to the sender but never acked by bob: it must survive bob's node.
        #expect(try await alice.request(.message(to: "bob", text: "unread")).isOK)
        #expect(await bob.nextMessage()?.text == "unread")
        let killed = ContinuousClock.now
        cluster.nodes[1].kill9()
        #expect(await alice.nextPresence(of: "bob", online: false, timeout: testLease * 3 + 2))
        #expect(await carol.nextPresence(of: "bob", online: false, timeout: 2))
        let noticed = ContinuousClock.now - killed
        #expect(noticed < .seconds(testLease * 3), "noticed in \(noticed)")
        #expect(try await alice.whoelseBecomes(["carol"]))

        let again = try await cluster.loggedIn("bob", on: 2)
        #expect(await alice.nextPresence(of: "bob", online: true))
        let kept = await again.nextMessage()
        #expect(kept?.text == "unread", "the unacked message waits for the next login")
        #expect(try await again.request(.ack(delivery: try #require(kept?.delivery))).isOK)
        let twice = try await cluster.nodes[0].client()
        #expect(try await twice.login("bob", "password-bob").code == .alreadyOnline)
        #expect(try await alice.request(.whoelsesince(seconds: 60)).users == ["bob", "carol"])

        try await cluster.restartNode(1)
        let dave = try await cluster.loggedIn("dave", on: 1)
        #expect(try await dave.whoelseBecomes(["alice", "bob", "carol"]), "a node that comes back rejoins")
    }

    @Test func messagesAcknowledgedToTheSenderSurviveTheRecipientsNodeDyingMidTraffic() async throws {
        let cluster = try await TestCluster.start(nodes: 3)
        defer { cluster.stop() }
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1)
        #expect(try await alice.whoelseBecomes(["bob"]))
        // Bob never acks: whatever alice was told ok must reach him at his next login, once.
        var acknowledged: Set<String> = []
        for index in 0..<40 {
            if index == 15 { cluster.nodes[1].kill9() }
            let text = "m\(index)"
            if try await alice.request(.message(to: "bob", text: text)).isOK { acknowledged.insert(text) }
        }
        #expect(acknowledged.count >= 30, "only \(acknowledged.count) of 40 were accepted")
        _ = bob
        #expect(await alice.nextPresence(of: "bob", online: false, timeout: testLease * 3 + 2))
        let again = try await cluster.loggedIn("bob", on: 2)
        var received: [String] = []
        while let message = await again.nextMessage(timeout: 2) { received.append(message.text) }
        #expect(Set(received).count == received.count, "each stored message is delivered once: \(received)")
        #expect(acknowledged.isSubset(of: Set(received)), "lost: \(acknowledged.subtracting(received).sorted())")
    }

    @Test func aDatabaseRestartIsSurvived() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1)
        #expect(try await alice.whoelseBecomes(["bob"]))
        try await cluster.postgres.restart()
        // Within the lease the nodes reconnect and keep their users; a request may fail meanwhile.
        var delivered = false
        let deadline = ContinuousClock.now + .seconds(testLease * 4)
        while !delivered, ContinuousClock.now < deadline {
            let reply = try await alice.request(.message(to: "bob", text: "after restart"))
            if reply.isOK { delivered = true } else {
                #expect(reply.code == .internal, "at worst an error")
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        #expect(delivered)
        if let message = await bob.nextMessage(timeout: 5) {
            #expect(message.text == "after restart")
        } else {
            // The node dropped its users when the lease ran out (never a wrong state): bob logs in again.
            let again = try await cluster.loggedIn("bob", on: 1)
            #expect(await again.nextMessage()?.text == "after restart")
        }
        let third = try await cluster.nodes[0].client()
        #expect(try await third.login("bob", "password-bob").code == .alreadyOnline)
    }

    @Test func aBroadcastSentWhileTheDatabaseIsDownReachesTheOtherNodeOnceItIsBack() async throws {
        // A lease longer than the outage: the nodes keep their users meanwhile.
        let cluster = try await TestCluster.start(nodes: 2, lease: 20)
        defer { cluster.stop() }
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1)
        let carol = try await cluster.loggedIn("carol", on: 0)
        #expect(try await alice.whoelseBecomes(["bob", "carol"]))
        try await cluster.postgres.stop(immediate: true)
        #expect(try await alice.request(.broadcast(text: "while the database is down")).isOK)
        #expect(await carol.nextBroadcast()?.text == "while the database is down", "the node's own users at once")
        #expect(try await alice.request(.broadcast(text: "still down")).isOK)
        try await cluster.postgres.start()
        #expect(await bob.nextBroadcast(timeout: 15)?.text == "while the database is down", "held, then sent")
        #expect(await bob.nextBroadcast()?.text == "still down", "in order")
        #expect(try await alice.request(.broadcast(text: "after")).isOK)
        #expect(await bob.nextBroadcast()?.text == "after")
        #expect(await bob.nextBroadcast(timeout: 1) == nil, "each once")
    }

    @Test func crossNodeMessagesAcknowledgedJustBeforeADatabaseCrashAreKept() async throws {
        let cluster = try await TestCluster.start(nodes: 2, lease: 20)
        defer { cluster.stop() }
        try await acknowledgedMessagesSurviveACrash(cluster)
    }

    @Test func soDoTheyForARoleThatMayNotWriteLogicalMessages() async throws {
        // Some hosted services revoke pg_logical_emit_message: the flush falls back to another write.
        let cluster = try await TestCluster.start(
            nodes: 2, lease: 20, role: "parley_plain", revoking: ["pg_logical_emit_message(boolean, text, text)"])
        defer { cluster.stop() }
        #expect(cluster.url.hasPrefix("postgresql://parley_plain@"))
        try await acknowledgedMessagesSurviveACrash(cluster)
    }

    /// Twenty cross-node messages ok'd, then PostgreSQL stopped in immediate mode (a crash: no
    /// checkpoint, WAL still in its buffers lost): all twenty reach the recipient's next login.
    private func acknowledgedMessagesSurviveACrash(_ cluster: TestCluster) async throws {
        let alice = try await cluster.loggedIn("alice", on: 0)
        let bob = try await cluster.loggedIn("bob", on: 1)
        #expect(try await alice.whoelseBecomes(["bob"]))
        var acknowledged: [String] = []
        for index in 0..<20 {
            let text = "m\(index)"
            if try await alice.request(.message(to: "bob", text: text)).isOK { acknowledged.append(text) }
        }
        #expect(acknowledged.count == 20)
        // A crash right after the last ok: no checkpoint, and WAL still in PostgreSQL's buffers is gone.
        try await cluster.postgres.stop(immediate: true)
        try await cluster.postgres.start()
        await bob.close()  // bob saw them live but never acked: they wait for his next login
        var again: TestChatClient?
        let deadline = ContinuousClock.now + .seconds(20)
        while again == nil, ContinuousClock.now < deadline {
            let client = try await cluster.nodes[0].client()
            if try await client.login("bob", "password-bob").isOK { again = client } else {
                await client.close()
                try await Task.sleep(for: .milliseconds(200))
            }
        }
        let back = try #require(again, "bob can log in again once the database is back")
        var received: [String] = []
        while let message = await back.nextMessage(timeout: 2) { received.append(message.text) }
        #expect(received == acknowledged, "every message alice was told ok about, once, in order")
    }
}
