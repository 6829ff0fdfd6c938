import Foundation
import NIOConcurrencyHelpers
import ParleyClient
import ParleyProtocol
import ParleyServer
import ParleyTestSupport
import Testing

/// Every request the server decoded, to show that private text never reaches it.
final class RequestLog: Sendable {
    private let requests = NIOLockedValueBox<[Request]>([])
    func record(_ request: Request) { requests.withLockedValue { $0.append(request) } }
    var all: [Request] { requests.withLockedValue { $0 } }
    func mentions(_ text: String) -> Bool { all.contains { "\($0)".contains(text) } }
}

/// alice asks bob, bob answers y: both sessions open.
/// Whether every one of `clients` got past login to the welcome line.
func welcomed(_ clients: LiveParley...) async -> Bool {
    for client in clients {
        guard await client.waitFor(line: "Welcome to the greatest messaging application ever!") else { return false }
    }
    return true
}

func openPrivate(_ alice: LiveParley, _ bob: LiveParley) async -> Bool {
    guard await welcomed(bob, alice) else { return false }
    alice.type("startprivate bob")
    guard await bob.waitFor(line: "alice would like to private message, enter y or n:") else { return false }
    bob.type("y")
    let a = await alice.waitFor(line: "Start private messaging with bob")
    let b = await bob.waitFor(line: "Start private messaging with alice")
    return a && b
}

@Suite("private sessions: real parley binaries and server on loopback", .serialized)
struct PrivateEndToEndTests {
    @Test func consentYesChatBothWaysStopAndTheServerNeverSeesTheText() async throws {
        let log = RequestLog()
        try await withTestServer({ $0.requestObserver = { log.record($0) } }) { server in
            let alice = try LiveParley(server, "alice")
            let bob = try LiveParley(server, "bob")
            let carol = try LiveParley(server, "carol")
            #expect(await openPrivate(alice, bob))
            #expect(await alice.waitFor(line: "bob accepts private messaging"))
            let codeA = await alice.safetyCode(with: "bob")
            let codeB = await bob.safetyCode(with: "alice")
            #expect(codeA != nil && codeA == codeB)
            alice.type("private bob the eagle lands at noon")
            #expect(await bob.waitFor(line: "alice(private): the eagle lands at noon"))
            bob.type("private alice copy that, noon")
            #expect(await alice.waitFor(line: "bob(private): copy that, noon"))
            alice.type("verify bob")
            #expect(await alice.find { $0.hasPrefix("bob's key fingerprint: ") } != nil)
            // carol is not part of it: her attempt to talk privately to either is refused locally.
            carol.type("private alice hello?")
            #expect(await carol.waitFor(line: "Error. Private messaging to alice not enabled"))
            bob.type("stopprivate alice")
            #expect(await bob.waitFor(line: "Private messaging with alice stopped"))
            #expect(await alice.waitFor(line: "Private messaging with bob ended: bob stopped private messaging"))
            alice.type("private bob still there?")
            #expect(await alice.waitFor(line: "Error. Private messaging to bob not enabled"))
            for client in [alice, bob, carol] { #expect(await client.finish() == 0) }
            // The server relayed keys and saw `active`, never the text.
            #expect(!log.mentions("eagle") && !log.mentions("copy that") && !log.mentions("still there"))
            #expect(log.all.contains(.active))
            #expect(log.all.contains { if case .startPrivate = $0 { true } else { false } })
            #expect(!alice.lines.contains { $0.contains("hello?") } && !bob.lines.contains { $0.contains("hello?") })
        }
    }

    @Test func declineAndNoAnswer() async throws {
        // The decline with the default answer time (a short one would race bob's answer on a loaded
        // machine), then no answer with a short one.
        try await withTestServer { server in
            let alice = try LiveParley(server, "alice")
            let bob = try LiveParley(server, "bob")
            #expect(await welcomed(bob, alice))
            alice.type("startprivate bob")
            #expect(await bob.waitFor(line: "alice would like to private message, enter y or n:"))
            bob.type("n")
            #expect(await alice.waitFor(line: "bob declines private messaging"))
            _ = await alice.finish()
            _ = await bob.finish()
        }
        try await withTestServer({ $0.privateAnswerTimeout = .seconds(1) }) { server in
            let alice = try LiveParley(server, "alice")
            let bob = try LiveParley(server, "bob")
            #expect(await welcomed(bob, alice))
            alice.type("startprivate bob")
            #expect(await bob.find { $0 == "alice would like to private message, enter y or n:" } != nil)
            // bob says nothing: after the server's answer timeout it counts as a decline.
            #expect(await alice.find(5) { $0 == "bob declines private messaging" } != nil)
            #expect(await bob.waitFor(line: "Private messaging with alice ended: no answer in time", timeout: 5))
            alice.type("private bob hi")
            #expect(await alice.waitFor(line: "Error. Private messaging to bob not enabled"))
            #expect(!alice.lines.contains("Start private messaging with bob"))
            _ = await alice.finish()
            _ = await bob.finish()
        }
    }

    @Test func aPendingPromptLetsOtherLinesRunAsCommandsAndStaysUp() async throws {
        try await withTestServer { server in
            let alice = try LiveParley(server, "alice")
            let bob = try LiveParley(server, "bob")
            #expect(await welcomed(bob, alice))
            alice.type("startprivate bob")
            #expect(await bob.waitFor(line: "alice would like to private message, enter y or n:"))
            let reminder = "Please enter y or n (private messaging with alice):"
            let before = bob.lines.count
            // Not y/n: it runs as a command (its output is alice's name), and the prompt is recalled after it.
            bob.type("whoelse")
            #expect(await bob.waitFor(line: reminder))
            let after = Array(bob.lines[before...])
            let output = try #require(after.firstIndex(of: "alice"))
            #expect(output < after.firstIndex(of: reminder)!)
            bob.type("message alice thinking about it")
            #expect(await alice.waitFor(line: "bob: thinking about it"))
            #expect(!alice.lines.contains("bob declines private messaging"))
            // The prompt is still the one pending: y answers it.
            bob.type("y")
            #expect(await bob.waitFor(line: "Start private messaging with alice"))
            #expect(await alice.waitFor(line: "bob accepts private messaging"))
            #expect(await alice.safetyCode(with: "bob") == bob.safetyCode(with: "alice"))
            _ = await alice.finish()
            _ = await bob.finish()
        }
    }

    @Test func logoutAndAKilledPeerEndTheSessionAndTheOtherSideIsTold() async throws {
        try await withTestServer { server in
            let alice = try LiveParley(server, "alice")
            var bob = try LiveParley(server, "bob")
            #expect(await openPrivate(alice, bob))
            bob.type("logout")
            #expect(await alice.waitFor(line: "Private messaging with bob ended: bob logged out"))
            _ = await bob.finish()
            bob = try LiveParley(server, "bob")
            #expect(await welcomed(bob))
            alice.type("startprivate bob")
            #expect(await bob.waitFor(line: "alice would like to private message, enter y or n:"))
            bob.type("y")
            #expect(await bob.waitFor(line: "Start private messaging with alice"))
            bob.kill()
            let told = await alice.find {
                $0 == "Private messaging with bob ended: connection to bob lost"
                    || $0 == "Private messaging with bob ended: bob lost the connection to the server"
            }
            #expect(told != nil)
            _ = await bob.finish()
            #expect(await alice.finish() == 0)
        }
    }

    @Test func timeoutEndsTheSessionAndBlockingClosesIt() async throws {
        // 4 s: both logins and the consent must fit inside one timeout on a loaded machine; alice then
        // chats until bob's timeout shows, however late it comes.
        try await withTestServer({ $0.idleTimeout = .seconds(4) }) { server in
            let alice = try LiveParley(server, "alice")
            let bob = try LiveParley(server, "bob")
            #expect(await openPrivate(alice, bob))
            // alice chats privately (the client sends `active`); bob stays silent and times out.
            var i = 0
            while await !bob.waitFor(line: "You have been logged out due to inactivity.", timeout: 0.4), i < 50 {
                alice.type("private bob ping \(i)")
                i += 1
            }
            #expect(await bob.waitFor(line: "You have been logged out due to inactivity.", timeout: 0))
            #expect(await alice.waitFor(line: "Private messaging with bob ended: bob timed out"))
            #expect(!alice.lines.contains("You have been logged out due to inactivity."))
            #expect(await bob.finish() == ExitStatus.timedOut.rawValue)
            _ = await alice.finish()
        }
        try await withTestServer { server in
            let alice = try LiveParley(server, "alice")
            let bob = try LiveParley(server, "bob")
            #expect(await openPrivate(alice, bob))
            alice.type("block bob")
            #expect(await alice.waitFor(line: "Private messaging with bob ended: blocked"))
            #expect(await bob.waitFor(line: "Private messaging with alice ended: blocked"))
            bob.type("private alice are you there?")
            #expect(await bob.waitFor(line: "Error. Private messaging to alice not enabled"))
            #expect(!alice.lines.contains { $0.contains("are you there") })
            _ = await alice.finish()
            _ = await bob.finish()
        }
    }

    @Test func jsonModeAnswersWithALine() async throws {
        try await withTestServer { server in
            let alice = try LiveParley(server, "alice")
            let bob = try LiveParley(server, "bob", arguments: ["--json"])
            #expect(await welcomed(alice))
            #expect(await bob.find { $0.contains(#""command":"login""#) } != nil)
            alice.type("startprivate bob")
            #expect(await bob.waitFor(line: #"{"event":"privaterequest","from":"alice"}"#))
            bob.type("y")
            #expect(await bob.find { $0.hasPrefix(#"{"event":"privatestarted","safety_code":""#) } != nil)
            #expect(await alice.waitFor(line: "Start private messaging with bob"))
            alice.type("private bob json hi")
            #expect(await bob.waitFor(line: #"{"event":"private","from":"alice","text":"json hi"}"#))
            _ = await alice.finish()
            _ = await bob.finish()
        }
    }
}
