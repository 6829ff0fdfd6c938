import Foundation
import Testing
@testable import ParleyStore

@Suite struct BlockStoreTests {
    @Test(arguments: StoreBackend.allCases) func blockUnblockAndQueries(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice", "bob", "carol")
            #expect(try await store.block(blocker: "alice", blocked: "bob"))
            #expect(try await !store.block(blocker: "alice", blocked: "bob"))
            #expect(try await store.block(blocker: "alice", blocked: "carol"))
            #expect(try await store.block(blocker: "carol", blocked: "bob"))

            #expect(try await store.blockedUsers(by: "alice") == ["bob", "carol"])
            #expect(try await store.usersBlocking("bob") == ["alice", "carol"])
            #expect(try await store.usersBlocking("alice") == [])
            #expect(try await store.isBlocked(blocker: "alice", blocked: "bob"))
            #expect(try await !store.isBlocked(blocker: "bob", blocked: "alice"))

            #expect(try await store.unblock(blocker: "alice", blocked: "bob"))
            #expect(try await !store.unblock(blocker: "alice", blocked: "bob"))
            #expect(try await !store.isBlocked(blocker: "alice", blocked: "bob"))
            #expect(try await store.blockedUsers(by: "alice") == ["carol"])
        }
    }

    @Test(arguments: StoreBackend.allCases) func blockingAnUnknownAccountIsATypedError(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice")
            await #expect(throws: StoreError.unknownAccount) {
                try await store.block(blocker: "alice", blocked: "ghost")
            }
            #expect(try await store.blockedUsers(by: "alice").isEmpty)
        }
    }
}

@Suite struct OfflineMessageStoreTests {
    let t0 = Date(timeIntervalSince1970: 1_700_000_000.123)

    @Test(arguments: StoreBackend.allCases) func enqueueListAcknowledge(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice", "bob", "carol")
            let m1 = try await store.enqueueOfflineMessage(to: "bob", from: "alice", text: "one", sentAt: t0)
            let other = try await store.enqueueOfflineMessage(to: "carol", from: "alice", text: "c", sentAt: t0)
            let m2 = try await store.enqueueOfflineMessage(to: "bob", from: "carol", text: "two 🚀", sentAt: t0 + 1)
            let m3 = try await store.enqueueOfflineMessage(to: "bob", from: "alice", text: "three", sentAt: t0 + 2)
            #expect(m1 < other && other < m2 && m2 < m3)

            let pending = try await store.pendingMessages(for: "bob", limit: 10)
            #expect(pending.map(\.id) == [m1, m2, m3])
            #expect(pending.map(\.text) == ["one", "two 🚀", "three"])
            #expect(pending[1].sender == "carol" && pending[1].recipient == "bob")
            #expect(pending[0].sentAt.timeIntervalSince1970 == 1_700_000_000.123)
            #expect(try await store.pendingMessages(for: "bob", limit: 2).map(\.id) == [m1, m2])
            #expect(try await store.pendingMessages(for: "bob", after: m1, limit: 10).map(\.id) == [m2, m3])
            #expect(try await store.pendingMessageCount(for: "bob") == 3)

            // Acknowledging needs the right recipient, deletes only that one, and is idempotent.
            #expect(try await !store.acknowledge(delivery: m2, for: "carol"))
            #expect(try await store.acknowledge(delivery: m2, for: "bob"))
            #expect(try await !store.acknowledge(delivery: m2, for: "bob"))
            #expect(try await store.pendingMessages(for: "bob", limit: 10).map(\.id) == [m1, m3])
            #expect(try await store.pendingMessages(for: "carol", limit: 10).map(\.id) == [other])
        }
    }

    @Test(arguments: StoreBackend.allCases) func unknownRecipientIsATypedError(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            await #expect(throws: StoreError.unknownAccount) {
                try await store.enqueueOfflineMessage(to: "ghost", from: "alice", text: "hi", sentAt: t0)
            }
        }
    }

    @Test(arguments: StoreBackend.allCases) func deliveryIdsAreNeverReused(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "bob")
            let first = try await store.enqueueOfflineMessage(to: "bob", from: "a", text: "x", sentAt: t0)
            #expect(try await store.acknowledge(delivery: first, for: "bob"))
            let second = try await store.enqueueOfflineMessage(to: "bob", from: "a", text: "y", sentAt: t0)
            #expect(second > first)
            // A stale ack of the first id must not touch the new message.
            #expect(try await !store.acknowledge(delivery: first, for: "bob"))
            #expect(try await store.pendingMessageCount(for: "bob") == 1)
        }
    }

    @Test(arguments: StoreBackend.allCases) func messagesSurviveCloseAndReopenInOrder(backend: StoreBackend) async throws {
        let database = try await StoreDatabase.make(backend)
        defer { database.remove() }
        let first = try await database.open()
        try await makeAccounts(first, "bob")
        var ids: [Int64] = []
        for i in 0..<5 {
            ids.append(try await first.enqueueOfflineMessage(to: "bob", from: "alice", text: "m\(i)", sentAt: t0))
        }
        try await first.close()

        let second = try await database.open()
        let pending = try await second.pendingMessages(for: "bob", limit: 100)
        #expect(pending.map(\.id) == ids)
        #expect(pending.map(\.text) == ["m0", "m1", "m2", "m3", "m4"])
        try await second.close()
    }
}

@Suite struct LoginHistoryStoreTests {
    let base = Date(timeIntervalSince1970: 1_700_000_000)

    @Test(arguments: StoreBackend.allCases) func usersActiveCoversOverlappingSessions(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "old", "overlap", "recent", "open")
            try await store.recordLogin(name: "old", at: base)
            #expect(try await store.recordLogout(name: "old", at: base + 100))
            try await store.recordLogin(name: "overlap", at: base + 50)
            try await store.recordLogout(name: "overlap", at: base + 300)
            try await store.recordLogin(name: "recent", at: base + 400)
            try await store.recordLogout(name: "recent", at: base + 500)
            try await store.recordLogin(name: "open", at: base + 10)

            #expect(try await store.usersActive(since: base + 200) == ["overlap", "recent", "open"])
            #expect(try await store.usersActive(since: base) == ["old", "overlap", "recent", "open"])
            #expect(try await store.usersActive(since: base + 1000) == ["open"])
            #expect(try await !store.recordLogout(name: "old", at: base + 600))
        }
    }

    @Test(arguments: StoreBackend.allCases) func logoutClosesOnlyOneOpenSession(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice")
            try await store.recordLogin(name: "alice", at: base)
            try await store.recordLogin(name: "alice", at: base + 10)
            #expect(try await store.recordLogout(name: "alice", at: base + 20))
            // The other session is still open, so she still counts far in the future.
            #expect(try await store.usersActive(since: base + 10_000) == ["alice"])
            #expect(try await store.recordLogout(name: "alice", at: base + 30))
            #expect(try await store.usersActive(since: base + 10_000) == [])
        }
    }

    @Test(arguments: StoreBackend.allCases) func crashLeftoversAreClosedAtStart(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice", "bob")
            try await store.recordLogin(name: "alice", at: base)
            try await store.recordLogin(name: "bob", at: base)
            try await store.recordLogout(name: "bob", at: base + 5)
            #expect(try await store.closeOpenLogins(at: base + 10) == 1)
            #expect(try await store.closeOpenLogins(at: base + 20) == 0)
            #expect(try await store.usersActive(since: base + 11) == [])
            #expect(try await store.usersActive(since: base + 10) == ["alice"])
        }
    }

    @Test(arguments: StoreBackend.allCases) func loginOfUnknownAccountIsATypedError(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            await #expect(throws: StoreError.unknownAccount) { try await store.recordLogin(name: "ghost", at: base) }
        }
    }
}
