import Foundation
import ParleyTestSupport
import Testing

/// Two real `parley` clients and the real `parley-server` process over TLS on 127.0.0.1; the
/// server is frozen with SIGSTOP while the clients keep typing.
@Suite("a frozen server: private messages go through, commands wait in flight", .serialized)
struct FrozenServerTests {
    static let welcome = "Welcome to the greatest messaging application ever!"

    /// alice asks bob, bob answers y; waits until both links are open.
    func openPrivate(_ alice: LiveParley, _ bob: LiveParley, aliceStarted: String) async -> Bool {
        alice.type("startprivate bob")
        guard await bob.waitFor(line: "alice would like to private message, enter y or n:") else { return false }
        bob.type("y")
        let a = await alice.find { $0.hasPrefix(aliceStarted) } != nil
        let b = await bob.waitFor(line: "Start private messaging with alice")
        return a && b
    }

    @Test func aPrivateMessageTypedAfterAnUnansweredOneReachesThePeerWhileTheServerIsStopped() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let alice = try LiveParley(port: server.port, caPath: server.certs.caPath, "alice", arguments: ["--json"])
        let bob = try LiveParley(port: server.port, caPath: server.certs.caPath, "bob")
        #expect(await alice.find { $0.contains(#""command":"login""#) } != nil)
        #expect(await bob.waitFor(line: Self.welcome))
        #expect(await openPrivate(alice, bob, aliceStarted: #"{"event":"privatestarted""#))

        #expect(await server.pause())
        alice.type("message bob x", "private bob y")
        // Through the direct link, while the server cannot read anything.
        #expect(await bob.waitFor(line: "alice(private): y"))
        #expect(!bob.lines.contains("alice: x"))
        let messageReply = #"{"command":"message","event":"reply","ok":true,"to":"bob"}"#
        let privateSent = #"{"command":"private","event":"reply","ok":true,"to":"bob"}"#
        #expect(!alice.lines.contains(messageReply), "the server is stopped: nothing can have answered")

        server.resume()
        #expect(await bob.waitFor(line: "alice: x"))
        #expect(await alice.waitFor(line: privateSent))
        // alice's output keeps the order she typed in: the message's reply, then the private one.
        let lines = alice.lines
        let replied = try #require(lines.firstIndex(of: messageReply))
        #expect(replied < lines.firstIndex(of: privateSent)!)
        let seen = bob.lines
        #expect(seen.firstIndex(of: "alice(private): y")! < seen.firstIndex(of: "alice: x")!)
        #expect(await alice.finish() == 0)
        #expect(await bob.finish() == 0)
    }

    @Test func commandsTypedTogetherAreInFlightTogetherAndAnsweredInTheOrderTyped() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let alice = try LiveParley(port: server.port, caPath: server.certs.caPath, "alice")
        let bob = try LiveParley(port: server.port, caPath: server.certs.caPath, "bob")
        #expect(await alice.waitFor(line: Self.welcome))
        #expect(await bob.waitFor(line: Self.welcome))
        #expect(await openPrivate(alice, bob, aliceStarted: "Start private messaging with bob"))
        // The safety code is the last line the opening prints; everything after it is new.
        #expect(await alice.safetyCode(with: "bob") != nil)
        let baseline = alice.lines.count

        #expect(await server.pause())
        alice.type("whoelse", "block alice", "nonsense", "message nobody hi", "private bob marker")
        // One ordered loop: the marker left after every command before it was sent, and the
        // stopped server has answered none of them, so all four are in flight at once.
        #expect(await bob.waitFor(line: "alice(private): marker"))
        #expect(Array(alice.lines[baseline...]) == [], "no reply can have come, and local output waits behind them")

        server.resume()
        #expect(await alice.waitFor(line: "Error. Invalid user"))
        #expect(Array(alice.lines[baseline...]) == [
            "bob",
            "Error. Cannot block self",
            "Error. Invalid command (type help for the list of commands)",
            "Error. Invalid user",
        ])
        #expect(await alice.finish() == 0)
        #expect(await bob.finish() == 0)
    }
}
