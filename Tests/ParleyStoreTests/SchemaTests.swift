import Foundation
import Testing
@testable import ParleyStore

@Suite struct SchemaTests {
    @Test func migrationsAreIdempotentOnReopen() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let first = try await SQLiteStore.open(path: dir.databasePath)
        #expect(try await first.userVersion() == SQLiteStore.schemaVersion)
        #expect(SQLiteStore.schemaVersion >= 1)
        try await makeAccounts(first, "alice")
        try await first.close()

        for _ in 0..<2 {
            let again = try await SQLiteStore.open(path: dir.databasePath)
            #expect(try await again.userVersion() == SQLiteStore.schemaVersion)
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

    @Test func newerSchemaIsRefused() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let store = try await SQLiteStore.open(path: dir.databasePath)
        try await store.query("PRAGMA user_version = 99")
        try await store.close()
        await #expect(throws: StoreError.schemaTooNew(found: 99, supported: SQLiteStore.schemaVersion)) {
            _ = try await SQLiteStore.open(path: dir.databasePath)
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
    @Test func useAfterCloseThrowsInsteadOfCrashing() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let store = try await SQLiteStore.open(path: dir.databasePath)
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
