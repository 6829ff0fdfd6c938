import Foundation
import Testing
@testable import ParleyStore

@Suite struct AccountStoreTests {
    @Test(arguments: StoreBackend.allCases) func createReadUpdateList(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let before = Date().addingTimeInterval(-1)
            #expect(try await store.createAccount(name: "alice", displayName: "Alice", passwordHash: "h1"))
            #expect(try await !store.createAccount(name: "alice", displayName: "ALICE", passwordHash: "h2"))
            #expect(try await store.createAccount(name: "bob", displayName: "Bob", passwordHash: "hb"))

            let alice = try #require(try await store.account(named: "alice"))
            #expect(alice.displayName == "Alice")
            #expect(alice.passwordHash == "h1")
            #expect(alice.failedAttempts == 0)
            #expect(alice.lockedUntil == nil)
            #expect(alice.createdAt > before && alice.createdAt <= Date().addingTimeInterval(1))
            #expect(try await store.account(named: "carol") == nil)
            // Canonicalisation is the server's job: the store matches names exactly.
            #expect(try await store.account(named: "Alice") == nil)

            #expect(try await store.updatePasswordHash(name: "alice", passwordHash: "h3"))
            #expect(try await store.account(named: "alice")?.passwordHash == "h3")
            #expect(try await !store.updatePasswordHash(name: "nobody", passwordHash: "h"))

            #expect(try await store.listAccounts().map(\.name) == ["alice", "bob"])
        }
    }

    @Test(arguments: StoreBackend.allCases) func concurrentRegistrationsOfOneNameYieldExactlyOneWinner(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        try await store.createAccount(name: "race", displayName: "Race\(i)", passwordHash: "h\(i)")
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(wins == 1)
            #expect(try await store.listAccounts().count == 1)
        }
    }

    @Test(arguments: StoreBackend.allCases) func failedLoginsLockAtThresholdAndReset(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice")
            let now = Date(timeIntervalSince1970: 1_700_000_000)
            let attempt = { try await store.recordFailedLogin(name: "alice", now: now, threshold: 3, lockDuration: 600) }
            #expect(try await attempt() == .counted(failedAttempts: 1))
            #expect(try await attempt() == .counted(failedAttempts: 2))
            let third = try await attempt()
            #expect(third == .locked(until: now.addingTimeInterval(600)))
            #expect(third.justLocked)

            let locked = try #require(try await store.account(named: "alice"))
            #expect(locked.failedAttempts == 0)
            #expect(locked.lockedUntil == now.addingTimeInterval(600))
            #expect(locked.isLocked(at: now))
            #expect(!locked.isLocked(at: now.addingTimeInterval(601)))

            #expect(try await attempt() == .counted(failedAttempts: 1))
            #expect(try await store.resetFailedLogins(name: "alice"))
            #expect(try await store.account(named: "alice")?.failedAttempts == 0)
            #expect(try await store.account(named: "alice")?.lockedUntil != nil)

            #expect(try await store.unlock(name: "alice"))
            #expect(try await store.account(named: "alice")?.lockedUntil == nil)
            #expect(try await !store.unlock(name: "nobody"))
            #expect(try await store.recordFailedLogin(name: "nobody", now: now, threshold: 3, lockDuration: 60)
                == .unknownAccount)
        }
    }

    @Test(arguments: StoreBackend.allCases) func concurrentFailuresAreAllCounted(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice")
            try await withThrowingTaskGroup(of: FailedLoginOutcome.self) { group in
                for _ in 0..<25 {
                    group.addTask {
                        try await store.recordFailedLogin(name: "alice", now: Date(), threshold: 10, lockDuration: 60)
                    }
                }
                let outcomes = try await group.reduce(into: [FailedLoginOutcome]()) { $0.append($1) }
                // 25 failures with threshold 10: locks exactly twice, 5 left on the counter.
                #expect(outcomes.filter(\.justLocked).count == 2)
            }
            #expect(try await store.account(named: "alice")?.failedAttempts == 5)
        }
    }

    @Test(arguments: StoreBackend.allCases) func lockSurvivesCloseAndReopen(backend: StoreBackend) async throws {
        let database = try await StoreDatabase.make(backend)
        defer { database.remove() }
        let until = Date(timeIntervalSince1970: 2_000_000_000)
        let first = try await database.open()
        try await makeAccounts(first, "alice")
        _ = try await first.recordFailedLogin(name: "alice", now: until.addingTimeInterval(-60), threshold: 1,
                                              lockDuration: 60)
        try await first.close()

        let second = try await database.open()
        let alice = try #require(try await second.account(named: "alice"))
        #expect(alice.lockedUntil == until)
        #expect(alice.isLocked(at: until.addingTimeInterval(-1)))
        try await second.close()
    }
}
