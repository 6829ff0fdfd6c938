import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

/// The real `parley` client given every node of a real cluster (`--host a,b`).
@Suite("the parley client in a cluster: real binaries, two nodes, one PostgreSQL", .serialized)
struct ClusterClientTests {
    static let welcome = "Welcome to the greatest messaging application ever!"

    @Test func aClientWhoseNodeIsKilledReconnectsToTheOtherNodeByItselfAndNothingIsLost() async throws {
        let cluster = try await TestCluster.start(nodes: 2)
        defer { cluster.stop() }
        let (first, second) = (cluster.nodes[0].port, cluster.nodes[1].port)
        let alice = try LiveParley(
            port: first, caPath: cluster.certs.caPath, "alice", arguments: ["--host", "127.0.0.1:\(first),127.0.0.1:\(second)"])
        #expect(await alice.waitFor(line: Self.welcome))
        let bob = try await cluster.loggedIn("bob", on: 1)
        #expect(try await bob.whoelseBecomes(["alice"]))
        alice.type("message bob before the crash")
        #expect(await bob.nextMessage()?.text == "before the crash")

        cluster.nodes[0].kill9()
        #expect(await alice.waitFor(line: "Connection lost; reconnecting to 127.0.0.1:\(second)..."))
        // Until the dead node's lease runs out the cluster still holds alice's login there: the
        // client's first tries on the other node are refused as already online, and it tries again.
        #expect(await bob.nextPresence(of: "alice", online: false, timeout: testLease * 3 + 2))
        // Sent while alice is offline (or just back): stored or delivered, never lost.
        #expect(try await bob.request(.message(to: "alice", text: "while you were away")).isOK)
        #expect(await alice.waitFor(line: "Reconnected to 127.0.0.1:\(second) as alice", timeout: 40))
        #expect(await alice.waitFor(line: "bob: while you were away"))
        #expect(await bob.nextPresence(of: "alice", online: true))

        alice.type("message bob back on the other node")
        #expect(await bob.nextMessage()?.text == "back on the other node")
        alice.type("whoelse")
        #expect(await alice.waitFor(line: "bob"))
        #expect(try await bob.request(.whoelse).users == ["alice"], "alice is online once, on the node that lives")
        let twice = try await cluster.nodes[1].client()
        #expect(try await twice.login("alice", "password-alice").code == .alreadyOnline)
        #expect(await alice.finish() == 0)
        #expect(alice.lines.filter { $0 == "bob: while you were away" }.count == 1, "delivered once")
        #expect(!alice.lines.contains { $0.hasPrefix("Error. Could not log in again") })
    }
}
