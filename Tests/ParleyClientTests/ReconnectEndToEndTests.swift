import Foundation
import ParleyClient
import ParleyProtocol
import ParleyTestSupport
import Testing

/// The real `parley` binary against real `parley-server` processes over TLS on 127.0.0.1: the
/// servers are killed with SIGKILL (no goodbye) while the client runs.
@Suite("reconnect and passwd: real parley and parley-server binaries", .serialized)
struct ReconnectEndToEndTests {
    static let welcome = "Welcome to the greatest messaging application ever!"

    func client(_ server: ServerProcess, _ name: String, _ arguments: [String] = []) throws -> LiveParley {
        try LiveParley(port: server.port, caPath: server.certs.caPath, name, arguments: arguments)
    }

    @Test func aKilledServerRestartedOnItsPortAndDatabaseIsReconnectedToAndMessagesArrive() async throws {
        let first = try await ServerProcess.start()
        let port = first.port
        let alice = try client(first, "alice")
        #expect(await alice.waitFor(line: Self.welcome))
        first.killHard()
        #expect(await alice.waitFor(line: "Connection lost; reconnecting to 127.0.0.1:\(port)..."))
        // Nothing listens yet: the first try fails and the next waits longer.
        let retry = await alice.find(20) { $0.hasPrefix("Could not reconnect (") }
        #expect(retry?.contains("trying 127.0.0.1:\(port) in ") == true && retry?.hasSuffix("(attempt 2)...") == true)
        let second = try await ServerProcess.start(certs: first.certs, database: first.databasePath, port: port, name: "restarted")
        defer {
            second.stop()
            first.stop()
        }
        #expect(await alice.waitFor(line: "Reconnected to 127.0.0.1:\(port) as alice", timeout: 40))
        let bob = try client(second, "bob")
        #expect(await bob.waitFor(line: Self.welcome))
        bob.type("message alice hello after the restart")
        #expect(await alice.waitFor(line: "bob: hello after the restart"))
        alice.type("whoelse")
        #expect(await alice.waitFor(line: "bob"))
        #expect(await alice.finish() == 0)
        #expect(await bob.finish() == 0)
        #expect(!alice.lines.contains { $0.hasPrefix("Error. Could not") && $0.contains("log in") })
    }

    @Test func withTwoServersListedKillingTheFirstLogsInToTheSecondAndJSONSaysSo() async throws {
        let one = try await ServerProcess.start(name: "one")
        let two = try await ServerProcess.start(certs: one.certs, name: "two")
        defer {
            two.stop()
            one.stop()
        }
        let list = "127.0.0.1:\(one.port),127.0.0.1:\(two.port)"
        let alice = try client(one, "alice", ["--host", list, "--json"])
        #expect(await alice.find { $0.contains(#""command":"login""#) && $0.contains(#""ok":true"#) } != nil)
        one.killHard()
        let reconnecting = await alice.find(20) { $0.contains(#""event":"reconnecting""#) }
        #expect(reconnecting?.contains(#""server":"127.0.0.1:\#(two.port)""#) == true)
        #expect(reconnecting?.contains(#""attempt":1"#) == true)
        #expect(await alice.waitFor(line: #"{"event":"reconnected","server":"127.0.0.1:\#(two.port)","username":"alice"}"#, timeout: 30))
        let bob = try client(two, "bob")
        #expect(await bob.waitFor(line: Self.welcome))
        bob.type("message alice you made it")
        #expect(await alice.waitFor(line: #"{"event":"message","from":"bob","text":"you made it"}"#))
        #expect(await alice.finish() == 0)
        #expect(await bob.finish() == 0)
    }

    @Test func logoutATimeoutAndAWrongPasswordOnTheNextServerNeverReconnect() async throws {
        let one = try await ServerProcess.start(name: "one")
        let two = try await ServerProcess.start(["--timeout", "3"], certs: one.certs, name: "two")
        defer {
            two.stop()
            one.stop()
        }
        let list = "127.0.0.1:\(one.port),127.0.0.1:\(two.port)"
        // A deliberate logout: the session ends, nothing tries the other server.
        let leaving = try client(one, "carol", ["--host", list])
        #expect(await leaving.waitFor(line: Self.welcome))
        leaving.type("logout")
        #expect(await leaving.finish() == 0)
        // Logged out by the server for inactivity: exit 67, the other listed server is not tried.
        let idle = try client(two, "dave", ["--host", "127.0.0.1:\(two.port),127.0.0.1:\(one.port)"])
        #expect(await idle.waitFor(line: Self.welcome))
        #expect(await idle.waitFor(line: "You have been logged out due to inactivity.", timeout: 20))
        #expect(await eventually(20) { !idle.process.isRunning }, "it exits by itself")
        #expect(await idle.finish() == ExitStatus.timedOut.rawValue)
        for run in [leaving, idle] { #expect(!run.lines.contains { $0.contains("reconnect") }) }
        #expect(one.log.contains("carol") && two.log.contains("dave"), "each server logs its logins")
        #expect(!two.log.contains("carol") && !one.log.contains("dave"), "and never saw the other's user")

        // alice has another password on the second server: the reconnect is refused once and stops.
        let other = try await TestChatClient.connect(port: two.port, caPath: two.certs.caPath)
        #expect(try await other.login("alice", "another-password").outcome == .ok(.login(username: "alice", created: true)))
        _ = try await other.request(.logout)
        let alice = try client(one, "alice", ["--host", list])
        #expect(await alice.waitFor(line: Self.welcome))
        one.killHard()
        #expect(await alice.waitFor(line: "Connection lost; reconnecting to 127.0.0.1:\(two.port)..."))
        #expect(await alice.waitFor(line: "Error. Could not log in again as alice: Invalid Password. Please try again", timeout: 20))
        #expect(await alice.finish() == ExitStatus.badCredentials.rawValue)
        #expect(alice.lines.count(where: { $0.contains("reconnect") }) == 1, "one attempt, no retry")
        #expect(two.log.components(separatedBy: "wrong password").count - 1 == 1, "one password check on the second server")
    }

    @Test func passwdFromAScriptThenTheNewPasswordLogsInTheOldDoesNotAndNeitherIsLogged() async throws {
        let server = try await ServerProcess.start(["--log-level", "debug"])
        defer { server.stop() }
        let alice = try client(server, "alice")
        #expect(await alice.waitFor(line: Self.welcome))
        // The two passwords are the next lines of input, never arguments of the command.
        alice.type("passwd", "password-alice", "a-new-password-1")
        #expect(await alice.waitFor(line: "Your password has been changed"))
        alice.type("passwd", "not-the-password", "another-one-22")
        #expect(await alice.waitFor(line: "Invalid Password. Your password was not changed"))
        #expect(await alice.finish() == 0)
        #expect(!alice.lines.contains { $0.contains("a-new-password-1") || $0.contains("another-one-22") })

        let arguments = ["--port", String(server.port), "--ca", server.certs.caPath]
        let old = try await BinaryRun.run(ParleyRun.binary, arguments, stdin: "alice\npassword-alice\n", timeout: 20)
        #expect(old.status == ExitStatus.badCredentials.rawValue)
        #expect(old.output.contains("Invalid Password. Please try again"))
        let new = try await BinaryRun.run(ParleyRun.binary, arguments, stdin: "alice\na-new-password-1\nwhoelse\n", timeout: 20)
        #expect(new.status == 0)
        #expect(new.output.contains(Self.welcome))
        let log = server.log
        #expect(log.contains("password changed"))
        for secret in ["password-alice", "a-new-password-1", "not-the-password", "another-one-22"] {
            #expect(!log.contains(secret), "the server log must never hold a password")
        }
    }
}
