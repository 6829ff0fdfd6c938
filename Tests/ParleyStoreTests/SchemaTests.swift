import Foundation
import Testing
@testable import ParleyPostgres
@testable import ParleyStore

@Suite struct SchemaTests {
    @Test(arguments: StoreBackend.allCases) func migrationsAreIdempotentOnReopen(backend: StoreBackend) async throws {
        let database = try await StoreDatabase.make(backend)
        defer { database.remove() }
        let first = try await database.open()
        #expect(try await database.schemaVersion(first) == database.latestVersion)
        #expect(database.latestVersion >= 1)
        try await makeAccounts(first, "alice")
        try await first.close()

        for _ in 0..<2 {
            let again = try await database.open()
            #expect(try await database.schemaVersion(again) == database.latestVersion)
            #expect(try await again.listAccounts().map(\.name) == ["alice"])
            try await again.close()
        }
    }

    @Test func pragmasAreInForce() async throws {
        try await withStore { store, _ async throws in
            #expect(try await store.pragma("journal_mode") == "wal")
            #expect(try await store.pragma("foreign_keys") == "1")
            #expect(try await store.pragma("synchronous") == "2") // FULL
            #expect(try await store.pragma("busy_timeout") == "5000")
        }
    }

    @Test(arguments: StoreBackend.allCases) func newerSchemaIsRefused(backend: StoreBackend) async throws {
        let database = try await StoreDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.open()
        switch store {
        case let store as SQLiteStore: try await store.query("PRAGMA user_version = 99")
        case let store as PostgresStore:
            try await store.rows("INSERT INTO schema_version (version, applied_at) VALUES (99, 0)")
        default: Issue.record("unexpected store \(type(of: store))")
        }
        try await store.close()
        await #expect(throws: StoreError.schemaTooNew(found: 99, supported: database.latestVersion)) {
            _ = try await database.open()
        }
    }

    @Test func databaseFilesAreOwnerOnly() async throws {
        try await withStore { store, dir in
            try await makeAccounts(store, "alice")
            #expect(try fileMode(dir.databasePath) == 0o600)
            let wal = dir.databasePath + "-wal"
            #expect(FileManager.default.fileExists(atPath: wal))
            #expect(try fileMode(wal) == 0o600)
            #expect(try fileMode(dir.databasePath + "-shm") == 0o600)
        }
    }

    @Test func existingWorldReadableFileIsTightened() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        #expect(FileManager.default.createFile(atPath: dir.databasePath, contents: nil,
                                               attributes: [.posixPermissions: 0o644]))
        #expect(try fileMode(dir.databasePath) == 0o644)
        let store = try await SQLiteStore.open(path: dir.databasePath)
        #expect(try fileMode(dir.databasePath) == 0o600)
        try await store.close()
    }
}

@Suite struct LifecycleTests {
    @Test(arguments: StoreBackend.allCases) func useAfterCloseThrowsInsteadOfCrashing(backend: StoreBackend) async throws {
        let database = try await StoreDatabase.make(backend)
        defer { database.remove() }
        let store = try await database.open()
        try await store.close()
        await #expect(throws: StoreError.self) { try await store.listAccounts() }
    }

    @Test func uriAndMemoryPathsAreRefused() async throws {
        for path in ["file:/tmp/x.sqlite?mode=rwc", ":memory:", ""] {
            await #expect(throws: StoreError.self) { _ = try await SQLiteStore.open(path: path) }
        }
    }

    @Test func missingDirectoryIsASetupError() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let path = dir.url.appendingPathComponent("missing/parley.sqlite").path
        await #expect(throws: StoreError.self) { _ = try await SQLiteStore.open(path: path) }
    }
}
