import Foundation
@testable import ParleyStore

/// A fresh directory per test, removed afterwards, so tests run in parallel on real files.
struct TempDirectory {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("parley-store-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    var databasePath: String { url.appendingPathComponent("parley.sqlite").path }

    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// Opens a store in a new temp directory, runs `body`, then closes the store and removes the files.
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

func makeAccounts(_ store: SQLiteStore, _ names: String...) async throws {
    for name in names {
        _ = try await store.createAccount(name: name, displayName: name.capitalized, passwordHash: "$scrypt$x")
    }
}

func fileMode(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as? NSNumber)?.intValue ?? -1
}
