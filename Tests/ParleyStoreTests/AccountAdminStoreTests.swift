import Foundation
import Testing
@testable import ParleyStore

@Suite struct AccountAdminStoreTests {
    @Test(arguments: StoreBackend.allCases) func disableIsStoredAndReadBack(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice", "bob")
            #expect(try await store.account(named: "alice")?.disabled == false)
            #expect(try await store.setDisabled(name: "alice", disabled: true))
            #expect(try await !store.setDisabled(name: "nobody", disabled: true))
            #expect(try await store.listAccounts().map { "\($0.name)=\($0.disabled)" } == ["alice=true", "bob=false"])
            #expect(try await store.setDisabled(name: "alice", disabled: false))
            #expect(try await store.account(named: "alice")?.disabled == false)
        }
    }

    @Test(arguments: StoreBackend.allCases)
    func theOfflineQuotaHoldsUnderConcurrentSenders(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "bob")
            let stored = try await withThrowingTaskGroup(of: Int64?.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        try await store.enqueueOfflineMessage(to: "bob", from: "alice", text: "m\(i)", sentAt: Date(), quota: 5)
                    }
                }
                var ids: [Int64] = []
                for try await id in group { if let id { ids.append(id) } }
                return ids
            }
            #expect(stored.count == 5, "exactly the quota is stored, whatever the interleaving")
            #expect(try await store.pendingMessageCount(for: "bob") == 5)
            #expect(try await store.pendingMessageTotal() == 5)
            await #expect(throws: StoreError.unknownAccount) {
                try await store.enqueueOfflineMessage(to: "ghost", from: "alice", text: "x", sentAt: Date(), quota: 5)
            }
        }
    }

    @Test func disableAndEnableAreDurableAndListed() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        let store = try await SQLiteStore.open(path: dir.databasePath)
        try await makeAccounts(store, "alice", "bob")
        #expect(try await store.account(named: "alice")?.disabled == false, "accounts start enabled")
        #expect(try await store.setDisabled(name: "alice", disabled: true))
        #expect(try await !store.setDisabled(name: "nobody", disabled: true))
        #expect(try await store.listAccounts().map { "\($0.name)=\($0.disabled)" } == ["alice=true", "bob=false"])
        try await store.close()
        // The flag is in the file, not in the connection.
        let reopened = try await SQLiteStore.open(path: dir.databasePath)
        #expect(try await reopened.account(named: "alice")?.disabled == true)
        #expect(try await reopened.setDisabled(name: "alice", disabled: false))
        #expect(try await reopened.account(named: "alice")?.disabled == false)
        try await reopened.close()
    }

    @Test(arguments: StoreBackend.allCases)
    func deleteRemovesTheAccountItsQueueBlocksBothWaysAndHistoryButNotWhatItSent(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice", "bob", "carol")
            let now = Date()
            _ = try await store.block(blocker: "alice", blocked: "bob")
            _ = try await store.block(blocker: "carol", blocked: "alice")
            _ = try await store.block(blocker: "bob", blocked: "carol")
            _ = try await store.enqueueOfflineMessage(to: "alice", from: "Bob", text: "for alice", sentAt: now)
            let sentByAlice = try await store.enqueueOfflineMessage(to: "bob", from: "Alice", text: "from alice", sentAt: now)
            try await store.recordLogin(name: "alice", at: now)
            try await store.recordLogin(name: "bob", at: now)

            #expect(try await store.deleteAccount(name: "alice"))
            #expect(try await store.account(named: "alice") == nil)
            #expect(try await store.blockedUsers(by: "alice").isEmpty)
            #expect(try await store.usersBlocking("alice").isEmpty, "blocks of alice by others are gone too")
            #expect(try await store.usersBlocking("bob").isEmpty)
            #expect(try await store.blockedUsers(by: "bob") == ["carol"], "other users' blocks stay")
            #expect(try await store.pendingMessageCount(for: "alice") == 0)
            #expect(try await store.pendingMessages(for: "bob", limit: 10).map(\.id) == [sentByAlice],
                    "what alice sent is still delivered")
            #expect(try await store.usersActive(since: now.addingTimeInterval(-60)) == ["bob"], "alice's login history is gone")
            #expect(try await store.pendingMessages(for: "alice", limit: 10).isEmpty)
            if let sqlite = store as? SQLiteStore {
                #expect(try await sqlite.query("SELECT COUNT(*) AS n FROM sessions WHERE name = 'alice'").first?.int("n") == 0)
            }
            #expect(try await !store.deleteAccount(name: "alice"), "a second delete finds nothing")
            // The name is free again: a new account starts with nothing of the old one.
            #expect(try await store.createAccount(name: "alice", displayName: "Alice", passwordHash: "h"))
            #expect(try await store.usersBlocking("alice").isEmpty)
        }
    }

    @Test func versionTwoAddsTheDisabledFlagToAVersionOneFile() async throws {
        let dir = try TempDirectory()
        defer { dir.remove() }
        // A file as version 1 left it: no `disabled` column, one account.
        let first = try await SQLiteStore.open(path: dir.databasePath)
        #expect(try await first.createAccount(name: "old", displayName: "Old", passwordHash: "h"))
        try await first.query("ALTER TABLE accounts DROP COLUMN disabled")
        try await first.query("PRAGMA user_version = 1")
        try await first.close()

        let migrated = try await SQLiteStore.open(path: dir.databasePath)
        #expect(try await migrated.userVersion() == SQLiteStore.schemaVersion)
        let old = try #require(try await migrated.account(named: "old"))
        #expect(!old.disabled, "existing accounts stay enabled")
        #expect(try await migrated.setDisabled(name: "old", disabled: true))
        try await migrated.close()
    }
}
