import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

/// The real `parley-server` binary with `--db postgresql://...` on a throwaway PostgreSQL cluster.
@Suite("parley-server on PostgreSQL", .serialized)
struct PostgresServerTests {
    private func client(_ server: ServerProcess, _ name: String) async throws -> TestChatClient {
        let client = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        let reply = try await client.login(name, "password-\(name)")
        try #require(reply.isOK, "login of \(name): \(reply)")
        return client
    }

    @Test("two users register and message, offline messages reach the recipient at login and survive a server restart")
    func messagingAndOfflineDeliveryAcrossRestarts() async throws {
        let cluster = try await PostgresProcess.shared()
        let url = cluster.url(database: try await cluster.createDatabase())
        let first = try await ServerProcess.start(database: url)
        defer { first.stop() }  // stop() is idempotent; this covers a failure before the restart
        do {
            let bob = try await client(first, "bob")
            let alice = try await client(first, "alice")
            #expect(try await alice.request(.message(to: "bob", text: "live hello")).isOK)
            #expect(await bob.nextMessage()?.text == "live hello")
            await bob.close()
            try await Task.sleep(for: .milliseconds(300))  // bob's logout reaches the hub
            #expect(try await alice.request(.message(to: "bob", text: "while you were out")).isOK)
            let bobAgain = try await client(first, "bob")
            let offline = try #require(await bobAgain.nextMessage())
            #expect(offline.text == "while you were out")
            try await bobAgain.request(.ack(delivery: try #require(offline.delivery)))
            await bobAgain.close()
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await alice.request(.message(to: "bob", text: "kept across restarts")).isOK)
            await alice.close()
        }
        first.stop()

        let second = try await ServerProcess.start(database: url)
        defer { second.stop() }
        let bob = try await client(second, "bob")
        let kept = await bob.nextMessage()
        #expect(kept?.text == "kept across restarts", "only the unacknowledged message is left")
        #expect(kept?.delivery != nil)
        #expect(await bob.nextMessage(timeout: 0.5) == nil)
        // The accounts are in PostgreSQL too: a wrong password is refused, not a new registration.
        let intruder = try await TestChatClient.connect(port: second.port, caPath: second.certs.caPath)
        #expect(try await !intruder.login("alice", "wrong-password").isOK)
    }

    @Test("a database restart while the server runs costs at worst an error, then the server recovers")
    func databaseRestartIsSurvived() async throws {
        // Its own cluster: restarting the shared one would break the suites running beside this one.
        let cluster = try await PostgresProcess.start()
        defer { cluster.terminate() }
        let url = cluster.url(database: try await cluster.createDatabase())
        let server = try await ServerProcess.start(database: url)
        defer { server.stop() }
        _ = try await client(server, "bob").close()
        let alice = try await client(server, "alice")
        #expect(try await alice.request(.message(to: "bob", text: "before")).isOK)

        // A crash and a restart (no shutdown checkpoint; every pooled connection is cut).
        try await cluster.stop(immediate: true)
        try await cluster.start()
        #expect(server.isRunning)

        // The pool may hand out a connection it has not yet seen die: that request gets an error
        // reply (the connection stays up); then the pool connects again and messages are stored.
        var replies: [Reply] = []
        while replies.count < 20, replies.last?.isOK != true {
            replies.append(try await alice.request(.message(to: "bob", text: "after"), timeout: 90))
        }
        #expect(replies.last?.isOK == true, "no message stored after the restart: \(replies)")
        #expect(replies.count <= 3, "more than a couple of errors before recovering: \(replies)")
        #expect(!alice.isClosed)
        await alice.close()
        // A login needs the cluster's listener back too; until it is, the answer is a clear error.
        var bob: TestChatClient?
        for _ in 0..<40 where bob == nil {
            let attempt = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
            let reply = try await attempt.login("bob", "password-bob")
            if reply.isOK { bob = attempt; break }
            #expect(reply.code == .internal, "only the database's absence may refuse it: \(reply)")
            await attempt.close()
            try await Task.sleep(for: .milliseconds(250))
        }
        let bobClient = try #require(bob, "bob never logged in again after the restart")
        var texts: [String] = []
        while let message = await bobClient.nextMessage(timeout: 2) { texts.append(message.text) }
        #expect(texts == ["before", "after"])
    }

    @Test("a bad database URL or password file is one clear line and exit 64; the password never shows")
    func badDatabaseOptions() async throws {
        let withPassword = try await ServerBinary.run(["--db", "postgresql://parley:hunter2@127.0.0.1/chat"])
        #expect(withPassword.status == 64)
        #expect(withPassword.output.contains("it must not contain a password (set PARLEY_DB_PASSWORD or use --db-password-file)"))
        #expect(withPassword.output.split(separator: "\n").count == 1, "one line")
        #expect(!withPassword.output.contains("hunter2"))
        let badPort = try await ServerBinary.run(["user", "list", "--db", "postgresql://parley@127.0.0.1:x/chat"])
        #expect(badPort.status == 64)
        #expect(badPort.output.contains("port x is not a number from 1 to 65535"))

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-pw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("pw").path
        #expect(FileManager.default.createFile(atPath: file, contents: Data("hunter2\n".utf8),
                                               attributes: [.posixPermissions: 0o644]))
        let open = try await ServerBinary.run(["--db", "postgresql://parley@127.0.0.1:1/chat", "--db-password-file", file])
        #expect(open.status == 64)
        #expect(open.output.contains("has mode 644; it must be 0600"))
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file)
        // Nothing listens on port 1: the server cannot start, says where it tried, not with what.
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let refused = try await ServerBinary.run([
            "--db", "postgresql://parley@127.0.0.1:1/chat", "--db-password-file", file, "--port", "0",
            "--cert", certs.certificatePath, "--key", certs.keyPath,
        ])
        #expect(refused.status == 70)
        #expect(refused.output.contains("cannot connect to postgresql://parley@127.0.0.1:1/chat"))
        #expect(!refused.output.contains("hunter2"))
    }
}
