import Foundation
import ParleyProtocol
import ParleyStore
import ParleyTestSupport
import Testing

/// `parley-server admin ...` against the real binary's admin socket (default path: beside the database).
private func admin(_ arguments: [String], _ server: ServerProcess) async throws -> BinaryRun {
    try await BinaryRun.run(ServerBinary.url, ["admin"] + arguments + ["--db", server.databasePath], timeout: 30)
}

private func loggedIn(_ name: String, on server: ServerProcess) async throws -> TestChatClient {
    let client = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
    let reply = try await client.login(name, "password-\(name.lowercased())")
    #expect(reply.isOK, "login of \(name): \(reply)")
    return client
}

private func mode(_ path: String) -> UInt32? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return UInt32(info.st_mode) & 0o7777
}

@Suite("parley-server admin over the running binary's admin socket", .serialized)
struct AdminBinaryTests {
    @Test func whoListsTheLoggedInClientsWithAddressLoginTimeAndIdle() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let alice = try await loggedIn("Alice", on: server)
        let bob = try await loggedIn("bob", on: server)
        let who = try await admin(["who"], server)
        #expect(who.status == 0, "\(who.output)")
        let lines = who.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("NAME") == true)
        let aliceLine = try #require(lines.first { $0.hasPrefix("Alice ") })
        #expect(aliceLine.contains("127.0.0.1:") && aliceLine.hasSuffix("s"), "address and idle: \(aliceLine)")
        #expect(aliceLine.contains(String(ISO8601DateFormatter().string(from: Date()).prefix(10))), "login date: \(aliceLine)")
        #expect(lines.contains { $0.hasPrefix("bob ") })
        #expect(lines.last == "2 users online")
        await alice.close()
        await bob.close()
    }

    @Test func kickLogsOneUserOutAtOnceAndTheOthersSeeThemLeave() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let alice = try await loggedIn("alice", on: server)
        let bob = try await loggedIn("bob", on: server)
        #expect(await alice.nextPresence(of: "bob", online: true))
        let kick = try await admin(["kick", "Bob"], server)
        #expect(kick.status == 0, "\(kick.output)")
        #expect(kick.output.contains("kicked Bob"))
        #expect(await bob.next { $0 == .loggedOut(reason: .kicked) } != nil, "bob is told why")
        #expect(await bob.waitForClose())
        #expect(await alice.nextPresence(of: "bob", online: false), "alice sees bob leave")
        let again = try await admin(["kick", "bob"], server)
        #expect(again.status == 1)
        #expect(again.output.contains("bob is not logged in (not_online)"))
        #expect(try await alice.request(.whoelse).users == [], "alice is still online, alone")
    }

    @Test func theTerminalClientShowsTheKickInWords() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        // The client stays logged in (stdin open) until the server logs it out.
        async let run = BinaryRun.run(
            ServerProcess.productURL("parley"), ["--port", String(server.port), "--ca", server.certs.caPath],
            stdin: "carol\npassword-carol\n", holdStdinOpen: true, timeout: 30)
        var online = false
        for _ in 0..<200 where !online {
            online = try await admin(["who"], server).output.contains("carol ")
            if !online { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(online, "carol logged in")
        #expect(try await admin(["kick", "carol"], server).status == 0)
        let result = try await run
        #expect(result.output.contains("You have been logged out by the server operator."), "\(result.output)")
        #expect(result.status == 68, "a kick ends the session like a lost connection")
    }

    @Test func disableLogsOutAtOnceAndTheNextLoginIsRefused() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let dave = try await loggedIn("dave", on: server)
        let erin = try await loggedIn("erin", on: server)
        let disable = try await admin(["disable", "dave"], server)
        #expect(disable.status == 0, "\(disable.output)")
        #expect(disable.output.contains("disabled dave and logged them out"))
        #expect(await dave.next { $0 == .loggedOut(reason: .disabled) } != nil)
        #expect(await dave.waitForClose())
        #expect(await erin.nextPresence(of: "dave", online: false))
        let retry = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        let refused = try await retry.login("dave", "password-dave")
        #expect(refused.code == .accountDisabled)
        #expect(refused.errorMessage == "Error. This account has been disabled by the server operator")
        let list = try await BinaryRun.run(ServerBinary.url, ["user", "list", "--db", server.databasePath], timeout: 30)
        #expect(list.output.contains("dave  disabled"), "\(list.output)")
        #expect(try await BinaryRun.run(ServerBinary.url, ["user", "enable", "dave", "--db", server.databasePath], timeout: 30).status == 0)
        let back = try await TestChatClient.connect(port: server.port, caPath: server.certs.caPath)
        #expect(try await back.login("dave", "password-dave").isOK, "enabled again on the running server")
    }

    @Test func theSocketIs0600AndASecondServerOnItRefusesToStart() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let socket = server.databasePath + ".admin.sock"
        #expect(mode(socket) == 0o600)
        // Same database, so same default socket: the second server stops before taking clients.
        let second = try await BinaryRun.run(ServerBinary.url, [
            "--port", "0", "--cert", server.certs.certificatePath, "--key", server.certs.keyPath,
            "--db", server.databasePath, "--insecure-hash-cost", "10",
        ], timeout: 30)
        #expect(second.status == 70)
        #expect(second.output.contains("admin socket \(socket) is in use by another running server"), "\(second.output)")
        #expect(try await admin(["who"], server).status == 0, "the first server's socket still works")
    }

    @Test func aStaleSocketIsReplacedSomethingElseIsNotAndShutdownRemovesIt() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let crashed = try await ServerProcess.start(certs: certs)
        let socket = crashed.databasePath + ".admin.sock"
        crashed.crash()
        #expect(mode(socket) != nil, "a crash leaves the socket file behind")
        #expect(try await admin(["who"], crashed).status == 69, "nobody listens on it")

        let next = try await ServerProcess.start(certs: certs)
        #expect(try await admin(["who"], next).status == 0, "the stale file was replaced")
        next.stop()
        #expect(mode(socket) == nil, "a clean shutdown removes the socket")

        #expect(FileManager.default.createFile(atPath: socket, contents: Data("not a socket".utf8)))
        let refused = try await BinaryRun.run(ServerBinary.url, [
            "--port", "0", "--cert", certs.certificatePath, "--key", certs.keyPath,
            "--db", crashed.databasePath, "--insecure-hash-cost", "10",
        ], timeout: 30)
        #expect(refused.status == 70)
        #expect(refused.output.contains("exists and is not a socket"))
        #expect(try String(contentsOfFile: socket, encoding: .utf8) == "not a socket", "a regular file is never removed")

        let off = try await ServerProcess.start(["--admin-socket", "none"], certs: certs)
        #expect(try await admin(["who"], off).status == 69, "--admin-socket none: no socket")
        off.stop()
    }

    @Test("another user is refused by the peer check even when the socket file lets them connect",
          .enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
                   "needs root to run the client as nobody"))
    func anotherUsersProcessIsRefused() async throws {
        let server = try await ServerProcess.start()
        defer { server.stop() }
        let socket = server.databasePath + ".admin.sock"
        // Open the file (and its directory) wide, as a careless operator might: the uid check remains.
        #expect(chmod(server.certs.directory.path, 0o755) == 0 && chmod(socket, 0o666) == 0)
        let stranger = try await BinaryRun.run(URL(fileURLWithPath: "/usr/bin/setpriv"), [
            "--reuid=65534", "--regid=65534", "--clear-groups", ServerBinary.url.path, "admin", "who", "--socket", socket,
        ], timeout: 30)
        #expect(stranger.status == 1, "\(stranger.output)")
        #expect(stranger.output.contains("(permission_denied)"), "\(stranger.output)")
        #expect(try await admin(["who"], server).status == 0, "the server's own user still gets in")
        #expect(server.log.contains("admin socket: connection refused"), "the refusal is logged")
    }
}
