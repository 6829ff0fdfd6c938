import Foundation
import Testing
@testable import ParleyPostgres
@testable import ParleyStore

/// Two stores on one database stand for two server nodes sharing it: each sees the other's writes,
/// and the atomic contracts hold across them, not only within one store.
@Suite struct SharedDatabaseTests {
    /// Opens `count` stores on one fresh database (all at once, so their migrations race).
    private func withNodes(_ backend: StoreBackend, _ count: Int = 2,
                           _ body: ([any ChatStore], StoreDatabase) async throws -> Void) async throws
    {
        let database = try await StoreDatabase.make(backend)
        defer { database.remove() }
        let stores = try await withThrowingTaskGroup(of: (any ChatStore).self) { group in
            for _ in 0..<count { group.addTask { try await database.open() } }
            return try await group.reduce(into: [any ChatStore]()) { $0.append($1) }
        }
        do {
            try await body(stores, database)
        } catch {
            for store in stores { try? await store.close() }
            throw error
        }
        for store in stores { try await store.close() }
    }

    @Test(arguments: StoreBackend.allCases) func eachNodeSeesTheOthersWrites(backend: StoreBackend) async throws {
        try await withNodes(backend) { nodes, _ in
            let (a, b) = (nodes[0], nodes[1])
            try await makeAccounts(a, "alice", "bob")
            #expect(try await b.listAccounts().map(\.name) == ["alice", "bob"])
            #expect(try await b.block(blocker: "bob", blocked: "alice"))
            #expect(try await a.isBlocked(blocker: "bob", blocked: "alice"))
            let id = try await a.enqueueOfflineMessage(to: "bob", from: "alice", text: "hi", sentAt: Date())
            #expect(try await b.pendingMessages(for: "bob", limit: 10).map(\.id) == [id])
            #expect(try await b.acknowledge(delivery: id, for: "bob"))
            #expect(try await !a.acknowledge(delivery: id, for: "bob"))
            try await a.recordLogin(name: "alice", at: Date())
            #expect(try await b.usersActive(since: Date().addingTimeInterval(3600)) == ["alice"])
        }
    }

    @Test(arguments: StoreBackend.allCases) func concurrentStartsMigrateOnce(backend: StoreBackend) async throws {
        try await withNodes(backend, 4) { nodes, database in
            for node in nodes { #expect(try await database.schemaVersion(node) == database.latestVersion) }
            if let store = nodes.first as? PostgresStore {
                let rows = try await store.rows("SELECT COUNT(*) FROM schema_version")
                #expect(try rows.first?.decode(Int64.self) == Int64(PostgresStore.schemaVersion))
            }
        }
    }

    @Test(arguments: StoreBackend.allCases) func registrationAndClaimsStayExactAcrossNodes(backend: StoreBackend) async throws {
        try await withNodes(backend) { nodes, _ in
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<20 {
                    let node = nodes[i % 2]
                    group.addTask { try await node.createAccount(name: "race", displayName: "R\(i)", passwordHash: "h") }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(wins == 1)
            let claims = try await withThrowingTaskGroup(of: LoginAttemptClaim.self) { group in
                for i in 0..<30 {
                    let node = nodes[i % 2]
                    group.addTask { try await node.claimLoginAttempt(name: "race", now: Date(), threshold: 3, lockDuration: 600) }
                }
                return try await group.reduce(into: [LoginAttemptClaim]()) { $0.append($1) }
            }
            let claimed = claims.compactMap { claim -> Int? in
                if case .claimed(let attempt) = claim { return attempt }
                return nil
            }
            #expect(claimed.sorted() == [1, 2, 3])
        }
    }
}
