import Foundation
import ParleyPostgres
import ParleyStore
import ParleyTestSupport
import Testing

/// `parley-server check` and start-up refusals, with the real binary.
@Suite("parley-server check", .serialized)
struct CheckCommandTests {
    /// Runs `check` over these files (with a database made first unless told otherwise).
    func check(_ certs: TestCertificates, database: String? = nil, extra: [String] = []) async throws -> BinaryRun {
        let db = database ?? certs.directory.appendingPathComponent("parley.sqlite").path
        return try await BinaryRun.run(
            ServerBinary.url, ["check", "--cert", certs.certificatePath, "--key", certs.keyPath, "--db", db] + extra,
            timeout: 60)
    }

    func makeDatabase(_ certs: TestCertificates) async throws -> String {
        let db = certs.directory.appendingPathComponent("parley.sqlite").path
        let store = try await SQLiteStore.open(path: db)
        for i in 0..<200 { _ = try await store.createAccount(name: "user\(i)", displayName: "User\(i)", passwordHash: "$scrypt$x\(i)") }
        try await store.close()
        return db
    }

    @Test("a sound setup passes with an ok line for each thing checked")
    func goodSetup() async throws {
        let certs = try TestCertificates.make(leafNotAfter: 90 * 86_400)
        defer { certs.remove() }
        _ = try await makeDatabase(certs)
        let run = try await check(certs)
        #expect(run.status == 0, "\(run.output)")
        for line in ["ok: configuration", "ok: certificate \(certs.certificatePath)", "days left", "matches the certificate",
                     "ok: private key \(certs.keyPath): mode 0600", "ok: database file", "PRAGMA quick_check ok", "check passed"] {
            #expect(run.output.contains(line), "missing \(line) in \(run.output)")
        }
        #expect(!run.output.contains("problem:"))
    }

    @Test("a certificate expiring within 30 days is a warning, not a failure")
    func expiringSoon() async throws {
        let certs = try TestCertificates.make(leafNotAfter: 10 * 86_400)
        defer { certs.remove() }
        let run = try await check(certs)
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("warning: certificate \(certs.certificatePath)") && run.output.contains("renew it soon"))
    }

    @Test("an expired certificate, a wrong key, a 0644 key and a damaged database each fail with their own line")
    func problems() async throws {
        let expired = try TestCertificates.make(leafNotBefore: -3 * 86_400, leafNotAfter: -86_400)
        defer { expired.remove() }
        let expiredRun = try await check(expired)
        #expect(expiredRun.status == 1)
        #expect(expiredRun.output.contains("problem: certificate \(expired.certificatePath)") && expiredRun.output.contains("expired on"))

        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let other = try TestCertificates.make()
        defer { other.remove() }
        let wrongKey = try await BinaryRun.run(
            ServerBinary.url, ["check", "--cert", certs.certificatePath, "--key", other.keyPath,
                               "--db", certs.directory.appendingPathComponent("x.sqlite").path], timeout: 60)
        #expect(wrongKey.status == 1)
        #expect(wrongKey.output.contains("problem: TLS configuration error: private key \(other.keyPath) does not match certificate"))

        chmod(certs.keyPath, 0o644)
        let open = try await check(certs)
        #expect(open.status == 1)
        #expect(open.output.contains("problem: private key \(certs.keyPath): mode 0644") && open.output.contains("chmod 600"))
        chmod(certs.keyPath, 0o600)

        let db = try await makeDatabase(certs)
        try corrupt(db)
        let damaged = try await check(certs, database: db)
        #expect(damaged.status == 1, "\(damaged.output)")
        #expect(damaged.output.contains("problem: database \(db)"), "\(damaged.output)")
    }

    @Test("the server refuses to start on a database that fails quick_check, saying so")
    func serverRefusesDamagedDatabase() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let db = try await makeDatabase(certs)
        try corrupt(db)
        let run = try await BinaryRun.run(
            ServerBinary.url, ["--port", "0", "--cert", certs.certificatePath, "--key", certs.keyPath, "--db", db], timeout: 60)
        #expect(run.status == 70)
        #expect(run.output.contains("failed its integrity check"), "\(run.output)")
    }

    @Test("on PostgreSQL check connects: an empty database, a migrated one, a lost table, an unreachable server")
    func postgres() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let cluster = try await PostgresProcess.shared()
        let name = try await cluster.createDatabase()
        let url = cluster.url(database: name)

        let empty = try await check(certs, database: url)
        #expect(empty.status == 0, "\(empty.output)")
        #expect(empty.output.contains("ok: database: PostgreSQL \(url)"), "\(empty.output)")
        #expect(empty.output.contains("reachable (server 1"), "\(empty.output)")
        #expect(empty.output.contains("database schema: empty"), "\(empty.output)")

        let server = try await ServerProcess.start(certs: certs, database: url)
        server.stop()
        let migrated = try await check(certs, database: url)
        #expect(migrated.status == 0, "\(migrated.output)")
        #expect(migrated.output.contains("ok: database schema: version \(PostgresStore.schemaVersion), current"), "\(migrated.output)")

        try await cluster.execute("DROP TABLE blocks", database: name)
        let damaged = try await check(certs, database: url)
        #expect(damaged.status == 1, "\(damaged.output)")
        #expect(damaged.output.contains("problem: database schema: version \(PostgresStore.schemaVersion) recorded but tables missing: blocks"),
                "\(damaged.output)")

        let nobody = try freeLoopbackPort()
        let unreachable = try await check(certs, database: "postgresql://postgres@127.0.0.1:\(nobody)/parley")
        #expect(unreachable.status == 1, "\(unreachable.output)")
        #expect(unreachable.output.contains("problem: database: store setup failed: cannot connect to postgresql://postgres@127.0.0.1:\(nobody)/parley"),
                "\(unreachable.output)")

        let looseFile = certs.directory.appendingPathComponent("db-password").path
        try "secret".write(toFile: looseFile, atomically: true, encoding: .utf8)
        chmod(looseFile, 0o644)
        let loose = try await check(certs, database: url, extra: ["--db-password-file", looseFile])
        #expect(loose.status != 0, "\(loose.output)")
        #expect(!loose.output.contains("secret"), "the password is never echoed")
    }

    /// Overwrites the middle of the file's b-tree pages (not the header page) with garbage.
    func corrupt(_ path: String) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let size = try handle.seekToEnd()
        #expect(size > 4 * 4096, "the database spans several pages")
        var offset: UInt64 = 4096 + 16
        while offset + 64 < size {
            try handle.seek(toOffset: offset)
            try handle.write(contentsOf: Data(repeating: 0xA5, count: 64))
            offset += 512
        }
    }
}
