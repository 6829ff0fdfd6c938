import Foundation
import ParleyClient
import ParleyProtocol
import ParleyServer
import ParleyTestSupport
import Testing

/// Runs the real `parley` binary in scripted (non-terminal) mode against `server`.
struct ParleyRun {
    var status: Int32
    var lines: [String]

    static var binary: URL { ServerProcess.productURL("parley") }

    /// Feeds `input` (one entry per line) and waits up to `timeout` seconds; with `holdOpen`, stdin
    /// stays open until the process exits on its own (e.g. the server times it out).
    static func run(
        _ server: TestServer, _ input: [String], arguments: [String] = [], holdOpen: Bool = false, timeout: Double = 20
    ) async throws -> ParleyRun {
        let run = try await BinaryRun.run(
            binary, ["--port", String(server.port), "--ca", server.certs.caPath] + arguments,
            stdin: input.map { $0 + "\n" }.joined(), holdStdinOpen: holdOpen, timeout: timeout)
        return ParleyRun(status: run.status, lines: run.output.split(separator: "\n").map(String.init))
    }
}

@Suite("parley binary against the real server", .serialized)
struct EndToEndTests {
    @Test func registerCommandsAndLogoutAtEndOfInput() async throws {
        try await withTestServer { server in
            let run = try await ParleyRun.run(server, ["alice", "password-alice", "whoelse", "block alice", "nonsense", "block bob"])
            #expect(run.status == 0)
            #expect(run.lines == [
                "Account created for alice.",
                "Welcome to the greatest messaging application ever!",
                "Error. Cannot block self",
                "Error. Invalid command (type help for the list of commands)",
                "Error. Invalid user",
            ])
        }
    }

    @Test func wrongPasswordIsRetriedThenBadCredentials() async throws {
        try await withTestServer { server in
            _ = try await ParleyRun.run(server, ["bob", "password-bob"])
            let retried = try await ParleyRun.run(server, ["bob", "not-the-password", "password-bob"])
            #expect(retried.status == 0)
            #expect(retried.lines == ["Invalid Password. Please try again", "Welcome to the greatest messaging application ever!"])
            let failed = try await ParleyRun.run(server, ["bob", "not-the-password"])
            #expect(failed.status == ExitStatus.badCredentials.rawValue)
        }
    }

    @Test func lockedAccountExits66() async throws {
        try await withTestServer { server in
            _ = try await ParleyRun.run(server, ["carol", "password-carol"])
            let run = try await ParleyRun.run(server, ["carol", "wrong-pass-1", "wrong-pass-2", "wrong-pass-3", "password-carol"])
            #expect(run.status == ExitStatus.accountLocked.rawValue)
            #expect(run.lines.last == "Invalid Password. Your account has been blocked. Please try again later")
        }
    }

    @Test func offlineMessagesAreShownOnceAndAcked() async throws {
        try await withTestServer { server in
            _ = try await ParleyRun.run(server, ["bob", "password-bob"])
            let alice = try await server.loggedIn("alice")
            #expect(try await alice.request(.message(to: "bob", text: "while you were out")).outcome == .ok(.none))
            let first = try await ParleyRun.run(server, ["bob", "password-bob"])
            #expect(first.lines.contains("alice: while you were out"))
            let second = try await ParleyRun.run(server, ["bob", "password-bob"])
            #expect(second.status == 0)
            #expect(!second.lines.contains("alice: while you were out"))
        }
    }

    @Test func storedMessagesDeliveredRightBeforeLogoutAreShownAndAckedOnce() async throws {
        // More than one batch (small batches), and a logout that leaves the moment the login is
        // answered: the stored messages are still on their way when it goes out.
        try await withTestServer({ $0.offlineBatchSize = 8 }) { server in
            _ = try await ParleyRun.run(server, ["bob", "password-bob"])
            let alice = try await server.loggedIn("alice")
            let texts = (1...20).map { "stored \($0)" }
            for text in texts { #expect(try await alice.request(.message(to: "bob", text: text)).outcome == .ok(.none)) }
            let atEnd = try await ParleyRun.run(server, ["bob", "password-bob"])
            #expect(atEnd.status == 0)
            #expect(atEnd.lines == ["Welcome to the greatest messaging application ever!"] + texts.map { "alice: \($0)" })
            let again = try await ParleyRun.run(server, ["bob", "password-bob"])
            #expect(again.lines == ["Welcome to the greatest messaging application ever!"], "every one was acked")

            for text in texts.prefix(3) { #expect(try await alice.request(.message(to: "bob", text: text)).outcome == .ok(.none)) }
            let typed = try await ParleyRun.run(server, ["bob", "password-bob", "logout", "whoelse"])
            #expect(typed.status == 0)
            #expect(typed.lines == ["Welcome to the greatest messaging application ever!"] + texts.prefix(3).map { "alice: \($0)" })
            let after = try await ParleyRun.run(server, ["bob", "password-bob"])
            #expect(after.lines == ["Welcome to the greatest messaging application ever!"])
        }
    }

    @Test func jsonModeReportsRepliesAndEvents() async throws {
        try await withTestServer { server in
            _ = try await ParleyRun.run(server, ["dave", "password-dave"])
            let erin = try await server.loggedIn("erin")
            let run = try await ParleyRun.run(server, ["dave", "password-dave", "whoelse", "message erin hi"], arguments: ["--json"])
            #expect(run.status == 0)
            #expect(run.lines.first == #"{"command":"login","created":false,"event":"reply","ok":true,"username":"dave"}"#)
            #expect(run.lines.contains(#"{"command":"whoelse","event":"reply","ok":true,"users":["erin"]}"#))
            #expect(run.lines.contains(#"{"command":"message","event":"reply","ok":true,"to":"erin"}"#))
            #expect(await erin.next { $0 == .message(from: "dave", text: "hi") } != nil)
        }
    }

    @Test func certificateForAnotherNameFailsClosed() async throws {
        try await withTestServer { server in
            let run = try await ParleyRun.run(server, ["alice", "password-alice"], arguments: ["--server-name", "evil.example"])
            #expect(run.status == ExitStatus.certificateFailed.rawValue)
            #expect(run.lines.first?.contains("certificate verification failed") == true)
        }
    }

    @Test func inactivityTimeoutExits67() async throws {
        // 3 s: the binary's start, handshake and login must fit inside it on a loaded machine.
        try await withTestServer({ $0.idleTimeout = .seconds(3) }) { server in
            let run = try await ParleyRun.run(server, ["frank", "password-frank"], holdOpen: true, timeout: 10)
            #expect(run.status == ExitStatus.timedOut.rawValue)
            #expect(run.lines.last == "You have been logged out due to inactivity.")
        }
    }

    @Test func libraryConnectionMatchesRepliesById() async throws {
        try await withTestServer { server in
            let connection = try await ChatConnection.connect(
                host: "127.0.0.1", port: server.port, tlsContext: try server.certs.clientContext(), serverHostname: "localhost")
            #expect(connection.serverVersion == Limits.protocolVersion)
            #expect(try await connection.login(username: "gina", password: "password-gina") == .loggedIn(username: "gina", created: true))
            async let a = connection.send(.whoelse)
            async let b = connection.send(.block(user: "gina"))
            #expect(try await a.outcome == .ok(.users([])))
            #expect(try await b.outcome == .error(code: .cannotBlockSelf, message: ErrorCode.cannotBlockSelf.defaultMessage))
            await connection.close()
            #expect(await connection.waitUntilClosed() == nil)
        }
    }
}
