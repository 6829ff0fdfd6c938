import Foundation
import Testing
@testable import ParleyStore

@Suite struct LoginClaimStoreTests {
    let now = Date(timeIntervalSince1970: 1_700_000_000)

    @Test(arguments: StoreBackend.allCases) func theThirdClaimLocksBeforeItsCheckEndsAndTheFailureRestartsTheLock(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice")
            let claim = { (at: Date) in try await store.claimLoginAttempt(name: "alice", now: at, threshold: 3, lockDuration: 600) }
            #expect(try await claim(now) == .claimed(attempt: 1))
            #expect(try await claim(now) == .claimed(attempt: 2))
            #expect(try await claim(now) == .claimed(attempt: 3))
            // The third check is still running: no fourth may start, from this server or another.
            #expect(try await claim(now) == .locked(until: now.addingTimeInterval(600)))
            let later = now.addingTimeInterval(5)
            try await store.settleLoginAttempt(name: "alice", attempt: 3, threshold: 3, outcome: .failed, now: later,
                                               lockDuration: 600)
            let locked = try #require(try await store.account(named: "alice"))
            #expect(locked.lockedUntil == later.addingTimeInterval(600))
            #expect(locked.failedAttempts == 0)
            #expect(try await claim(later.addingTimeInterval(599)) == .locked(until: later.addingTimeInterval(600)))
            // Expired: counting starts again at 1 and the stale lock is cleared.
            #expect(try await claim(later.addingTimeInterval(601)) == .claimed(attempt: 1))
            #expect(try await store.account(named: "alice")?.lockedUntil == nil)
        }
    }

    @Test(arguments: StoreBackend.allCases) func aRightPasswordOnTheThirdClaimLiftsOnlyItsOwnLock(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice", "bob")
            for _ in 1...3 { _ = try await store.claimLoginAttempt(name: "alice", now: now, threshold: 3, lockDuration: 600) }
            try await store.settleLoginAttempt(name: "alice", attempt: 3, threshold: 3, outcome: .succeeded, now: now,
                                               lockDuration: 600)
            let alice = try #require(try await store.account(named: "alice"))
            #expect(alice.lockedUntil == nil && alice.failedAttempts == 0)

            // A success below the threshold leaves a lock it did not set (an operator's) alone.
            #expect(try await store.claimLoginAttempt(name: "bob", now: now, threshold: 3, lockDuration: 600) == .claimed(attempt: 1))
            _ = try await store.recordFailedLogin(name: "bob", now: now, threshold: 1, lockDuration: 60)
            try await store.settleLoginAttempt(name: "bob", attempt: 1, threshold: 3, outcome: .succeeded, now: now,
                                               lockDuration: 600)
            #expect(try await store.account(named: "bob")?.lockedUntil == now.addingTimeInterval(60))
        }
    }

    @Test(arguments: StoreBackend.allCases) func anAbandonedCheckIsNotCounted(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice")
            #expect(try await store.claimLoginAttempt(name: "alice", now: now, threshold: 3, lockDuration: 600) == .claimed(attempt: 1))
            try await store.settleLoginAttempt(name: "alice", attempt: 1, threshold: 3, outcome: .abandoned, now: now,
                                               lockDuration: 600)
            #expect(try await store.account(named: "alice")?.failedAttempts == 0)
            for _ in 1...3 { _ = try await store.claimLoginAttempt(name: "alice", now: now, threshold: 3, lockDuration: 600) }
            try await store.settleLoginAttempt(name: "alice", attempt: 3, threshold: 3, outcome: .abandoned, now: now,
                                               lockDuration: 600)
            let alice = try #require(try await store.account(named: "alice"))
            #expect(alice.failedAttempts == 2 && alice.lockedUntil == nil)
            #expect(try await store.claimLoginAttempt(name: "nobody", now: now, threshold: 3, lockDuration: 600) == .unknownAccount)
        }
    }

    @Test(arguments: StoreBackend.allCases) func ofManyConcurrentClaimsExactlyThresholdGetThrough(backend: StoreBackend) async throws {
        try await withStore(backend) { store in
            try await makeAccounts(store, "alice")
            let claims = try await withThrowingTaskGroup(of: LoginAttemptClaim.self) { group in
                for _ in 0..<30 {
                    group.addTask { try await store.claimLoginAttempt(name: "alice", now: Date(), threshold: 3, lockDuration: 600) }
                }
                return try await group.reduce(into: [LoginAttemptClaim]()) { $0.append($1) }
            }
            let claimed = claims.compactMap { claim -> Int? in
                if case .claimed(let attempt) = claim { return attempt }
                return nil
            }
            #expect(claimed.sorted() == [1, 2, 3])
            #expect(claims.count(where: { if case .locked = $0 { true } else { false } }) == 27)
        }
    }
}
