import Foundation
import ParleyProtocol
import ParleyStore
import ParleyTestSupport
import Testing

/// Runs the built `parley-server` executable.
struct ServerBinary {
    static var url: URL { ServerProcess.productURL("parley-server") }

    /// Runs to completion with `stdin` as input; returns the exit status and everything printed.
    static func run(_ arguments: [String], stdin: String = "", timeout: Double = 60) async throws -> (status: Int32, output: String) {
        let run = try await BinaryRun.run(url, arguments, stdin: stdin, timeout: timeout)
        return (run.status, run.output)
    }
}

@Suite("parley-server executable: flags, admin commands, logs", .serialized)
struct ServerBinaryTests {
    @Test("bad values and malformed original-form arguments are usage errors (exit 64) with a clear message")
    func usageErrors() async throws {
        let badPort = try await ServerBinary.run(["99999", "10", "120"])
        #expect(badPort.status == 64)
        #expect(badPort.output.contains("port must be 0-65535"))
        let twoNumbers = try await ServerBinary.run(["3331", "10"])
        #expect(twoNumbers.status == 64)
        #expect(twoNumbers.output.contains("PORT BLOCK_DURATION TIMEOUT"))
        let both = try await ServerBinary.run(["3331", "10", "120", "--port", "4000"])
        #expect(both.status == 64)
        // The record layer is OpenSSL's, always: the option that chose another is gone.
        let records = try await ServerBinary.run(["--tls-records", "openssl"])
        #expect(records.status == 64)
        let help = try await ServerBinary.run(["serve", "--help"])
        #expect(help.status == 0)
        for flag in ["--port", "--block-duration", "--timeout", "--bind", "--cert", "--key", "--db", "--no-registration"] {
            #expect(help.output.contains(flag), "help mentions \(flag)")
        }
    }

    @Test("a group-readable key makes the server refuse to start, naming the fix")
    func insecureKeyRefused() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        chmod(certs.keyPath, 0o640)
        let run = try await ServerBinary.run([
            "--port", "0", "--cert", certs.certificatePath, "--key", certs.keyPath,
            "--db", certs.directory.appendingPathComponent("x.sqlite").path,
        ])
        #expect(run.status != 0)
        #expect(run.output.contains("chmod 600"))
    }

    @Test("import-credentials hashes each line of the original credentials.txt; the accounts log in")
    func importCredentials() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let db = certs.directory.appendingPathComponent("import.sqlite").path
        let file = certs.directory.appendingPathComponent("credentials.txt").path
        try "hans falcon*solo\nyoda wise@!man\n\nbad line\nhans again-and-again\n".write(toFile: file, atomically: true, encoding: .utf8)
        let run = try await ServerBinary.run(["import-credentials", file, "--db", db, "--insecure-hash-cost", "10"])
        #expect(run.output.contains("imported 2 accounts, 1 already existed, 1 invalid lines"))
        #expect(run.status == 65, "invalid lines make the exit status non-zero")

        let store = try await SQLiteStore.open(path: db)
        let hans = try #require(try await store.account(named: "hans"))
        try await store.close()
        #expect(hans.passwordHash.hasPrefix("$scrypt$") && !hans.passwordHash.contains("falcon"))

        let server = try await TestServer.start { $0.databasePath = db }
        defer { Task { await server.stop() } }
        let c = try await server.client()
        #expect(try await c.login("hans", "falcon*solo").outcome == .ok(.login(username: "hans", created: false)))
        let d = try await server.client()
        #expect(try await d.login("yoda", "wrong-password").code == .wrongPassword)
    }

    @Test("user add/passwd/list/unlock read passwords from stdin, never argv")
    func userAdmin() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let db = certs.directory.appendingPathComponent("admin.sqlite").path
        let add = try await ServerBinary.run(["user", "add", "Leia", "--db", db], stdin: "princess-pw\n")
        #expect(add.status == 0)
        #expect(try await ServerBinary.run(["user", "add", "leia", "--db", db], stdin: "princess-pw\n").status != 0)
        #expect(try await ServerBinary.run(["user", "add", "short", "--db", db], stdin: "x\n").status != 0)
        let store = try await SQLiteStore.open(path: db)
        _ = try await store.recordFailedLogin(name: "leia", now: Date(), threshold: 1, lockDuration: 3600)
        try await store.close()
        let list = try await ServerBinary.run(["user", "list", "--db", db])
        #expect(list.output.contains("Leia") && list.output.contains("locked until"))
        #expect(try await ServerBinary.run(["user", "unlock", "leia", "--db", db]).status == 0)
        #expect(try await ServerBinary.run(["user", "passwd", "leia", "--db", db], stdin: "new-password\n").status == 0)
        let after = try await ServerBinary.run(["user", "list", "--db", db])
        #expect(after.output.contains("Leia") && !after.output.contains("locked"))
    }

    @Test("the server's log has logins and refusals but never a password or a message body")
    func logsHoldNoSecrets() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let logPath = certs.directory.appendingPathComponent("server.log").path
        #expect(FileManager.default.createFile(atPath: logPath, contents: nil))
        let process = Process()
        process.executableURL = ServerBinary.url
        process.arguments = [
            "--port", "0", "--cert", certs.certificatePath, "--key", certs.keyPath,
            "--db", certs.directory.appendingPathComponent("log.sqlite").path, "--insecure-hash-cost", "10",
        ]
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        defer { if process.isRunning { process.interrupt(); process.waitUntilExit() } }
        // Port 0: the OS picks a free port, and the server logs it ("listening address=HOST:PORT").
        var port: Int?
        let deadline = ContinuousClock.now + .seconds(60)
        while port == nil, ContinuousClock.now < deadline, process.isRunning {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("listening") }),
                let range = line.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression)
            {
                port = Int(line[range].split(separator: ":").last!)
            } else {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        let listening = try #require(port, "the server logged its address")
        let a = try await TestChatClient.connect(port: listening, caPath: certs.caPath)
        try await a.login("alice", "Secret-Password-1")
        let b = try await TestChatClient.connect(port: listening, caPath: certs.caPath)
        try await b.login("bob", "Other-Secret-2")
        #expect(try await b.login("alice", "Wrong-Guess-3").code == .alreadyLoggedIn)
        try await a.request(.message(to: "bob", text: "the body is private"))
        try await a.request(.broadcast(text: "broadcast body too"))
        try await a.request(.logout)
        process.interrupt()
        process.waitUntilExit()
        let text = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(text.contains("login"))
        #expect(text.contains("listening"))
        for secret in ["Secret-Password-1", "Other-Secret-2", "Wrong-Guess-3", "the body is private", "broadcast body too"] {
            #expect(!text.contains(secret), "log leaks \(secret)")
        }
    }
}
