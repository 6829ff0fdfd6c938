import Foundation
import ParleyTestSupport
import Testing
@testable import ParleyPostgres
@testable import ParleyStore

/// The backends every store contract test runs against.
enum StoreBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// One fresh, empty database of a backend (a temp file, or a new database on the shared test
/// cluster), which may be opened several times (reopen, two nodes).
struct StoreDatabase: Sendable {
    let backend: StoreBackend
    private let directory: TempDirectory?
    private let url: PostgresURL?

    static func make(_ backend: StoreBackend) async throws -> StoreDatabase {
        switch backend {
        case .sqlite:
            return StoreDatabase(backend: backend, directory: try TempDirectory(), url: nil)
        case .postgres:
            let cluster = try await PostgresProcess.shared()
            let name = try await cluster.createDatabase()
            return StoreDatabase(backend: backend, directory: nil,
                                 url: try PostgresURL(parsing: cluster.url(database: name)))
        }
    }

    func open() async throws -> any ChatStore {
        switch backend {
        case .sqlite: try await SQLiteStore.open(path: directory!.databasePath)
        case .postgres: try await PostgresStore.open(url: url!, password: nil)
        }
    }

    /// The schema version the database records (PRAGMA user_version, or the schema_version table).
    func schemaVersion(_ store: any ChatStore) async throws -> Int {
        switch store {
        case let store as SQLiteStore: try await store.userVersion()
        case let store as PostgresStore: try await store.storedSchemaVersion()
        default: -1
        }
    }

    /// The newest version this build applies.
    var latestVersion: Int {
        switch backend {
        case .sqlite: SQLiteStore.schemaVersion
        case .postgres: PostgresStore.schemaVersion
        }
    }

    func remove() { directory?.remove() }
}

/// A fresh directory per test, removed afterwards, so tests run in parallel on real files.
struct TempDirectory: Sendable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("parley-store-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var databasePath: String { url.appendingPathComponent("parley.sqlite").path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Opens a store on a fresh database of `backend`, runs `body`, then closes it and removes the files.
@discardableResult
func withStore<T>(_ backend: StoreBackend, _ body: (any ChatStore) async throws -> T) async throws -> T {
    let database = try await StoreDatabase.make(backend)
    defer { database.remove() }
    let store = try await database.open()
    do {
        let result = try await body(store)
        try await store.close()
        return result
    } catch {
        try? await store.close()
        throw error
    }
}

/// The SQLite-only form, for tests of SQLite's own behaviour (pragmas, file modes).
@discardableResult
func withStore<T>(_ body: (SQLiteStore, TempDirectory) async throws -> T) async throws -> T {
    let dir = try TempDirectory()
    defer { dir.remove() }
    let store = try await SQLiteStore.open(path: dir.databasePath)
    do {
        let result = try await body(store, dir)
        try await store.close()
        return result
    } catch {
        try? await store.close()
        throw error
    }
}

func makeAccounts(_ store: any ChatStore, _ names: String...) async throws {
    for name in names {
        _ = try await store.createAccount(name: name, displayName: name.capitalized, passwordHash: "$scrypt$x")
    }
}

func fileMode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
}
