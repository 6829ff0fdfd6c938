import Foundation
import ParleyStore
import PostgresNIO

// Accounts and lockout: each contract one statement, so it stays exact across nodes.

extension PostgresStore {
    // MARK: Accounts

    public func createAccount(name: String, displayName: String, passwordHash: String) async throws -> Bool {
        try await !rows(
            """
            INSERT INTO accounts (name, display_name, password_hash, failed_attempts, locked_until, created_at)
            VALUES (\(name), \(displayName), \(passwordHash), 0, NULL, \(Date().unixMilliseconds))
            ON CONFLICT (name) DO NOTHING
            RETURNING name
            """).isEmpty
    }

    public func account(named name: String) async throws -> Account? {
        try await rows("SELECT \(unescaped: Self.accountColumns) FROM accounts WHERE name = \(name)")
            .first.map(Self.account(from:))
    }

    @discardableResult
    public func updatePasswordHash(name: String, passwordHash: String) async throws -> Bool {
        try await !rows("UPDATE accounts SET password_hash = \(passwordHash) WHERE name = \(name) RETURNING name").isEmpty
    }

    public func listAccounts() async throws -> [Account] {
        // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
        try await rows("SELECT \(unescaped: Self.accountColumns) FROM accounts ORDER BY name COLLATE \"C\"")
            .map(Self.account(from:))
    }

    private static let accountColumns =
        "name, display_name, password_hash, failed_attempts, locked_until, created_at"

    private static func account(from row: PostgresRow) throws -> Account {
        let (name, display, hash, failed, locked, created) =
            try row.decode((String, String, String, Int64, Int64?, Int64).self)
        return Account(name: name, displayName: display, passwordHash: hash, failedAttempts: Int(failed),
                       lockedUntil: locked.map(Date.init(unixMilliseconds:)), createdAt: Date(unixMilliseconds: created))
    }

    // MARK: Lockout

    public func recordFailedLogin(name: String, now: Date, threshold: Int, lockDuration: TimeInterval)
        async throws -> FailedLoginOutcome
    {
        precondition(threshold >= 1, "lockout threshold must be at least 1")
        let limit = Int64(threshold)
        let until = now.addingTimeInterval(lockDuration).unixMilliseconds
        // SET expressions all see the row's old values, so both CASEs test the same count; the
        // row lock makes concurrent increments queue. A returned 0 means this one locked.
        let result = try await rows(
            """
            UPDATE accounts SET
                failed_attempts = CASE WHEN failed_attempts + 1 >= \(limit) THEN 0 ELSE failed_attempts + 1 END,
                locked_until = CASE WHEN failed_attempts + 1 >= \(limit) THEN \(until) ELSE locked_until END
            WHERE name = \(name)
            RETURNING failed_attempts, locked_until
            """)
        guard let row = result.first else { return .unknownAccount }
        let (attempts, lockedUntil) = try row.decode((Int64, Int64?).self)
        if attempts == 0, let lockedUntil { return .locked(until: Date(unixMilliseconds: lockedUntil)) }
        return .counted(failedAttempts: Int(attempts))
    }

    public func claimLoginAttempt(name: String, now: Date, threshold: Int, lockDuration: TimeInterval)
        async throws -> LoginAttemptClaim
    {
        precondition(threshold >= 1, "lockout threshold must be at least 1")
        let limit = Int64(threshold)
        let nowMs = now.unixMilliseconds
        let until = now.addingTimeInterval(lockDuration).unixMilliseconds
        // One statement checks the lock and counts the attempt (the UPDATE waits for the row lock
        // and re-checks its WHERE on the newest row), so of concurrent claims exactly `threshold`
        // pass. The outer SELECT answers for a refused claim in the same statement: the account
        // exists (its lock as of the snapshot) or not. An expired lock restarts counting at 1.
        let result = try await rows(
            """
            WITH claimed AS (
                UPDATE accounts SET
                    failed_attempts = CASE WHEN locked_until IS NULL THEN failed_attempts + 1 ELSE 1 END,
                    locked_until = CASE
                        WHEN (CASE WHEN locked_until IS NULL THEN failed_attempts + 1 ELSE 1 END) >= \(limit)
                        THEN \(until) ELSE NULL END
                WHERE name = \(name) AND (locked_until IS NULL OR locked_until <= \(nowMs))
                RETURNING failed_attempts
            )
            SELECT (SELECT failed_attempts FROM claimed), a.locked_until
            FROM accounts a WHERE a.name = \(name)
            """)
        guard let row = result.first else { return .unknownAccount }
        let (attempt, lockedUntil) = try row.decode((Int64?, Int64?).self)
        if let attempt { return .claimed(attempt: Int(attempt)) }
        // Refused: the snapshot may predate the lock that refused it; then say "locked until now",
        // as the SQLite store does, and the caller may retry.
        return .locked(until: lockedUntil.map(Date.init(unixMilliseconds:)) ?? now)
    }

    public func settleLoginAttempt(name: String, attempt: Int, threshold: Int, outcome: LoginAttemptOutcome,
                                   now: Date, lockDuration: TimeInterval) async throws
    {
        let ownLock = attempt >= threshold
        switch outcome {
        case .succeeded:
            // Only the claim that set the lock may lift it; an operator's or another node's lock stays.
            try await rows(
                """
                UPDATE accounts SET failed_attempts = 0,
                    locked_until = CASE WHEN \(ownLock) THEN NULL ELSE locked_until END
                WHERE name = \(name)
                """)
        case .failed:
            guard ownLock else { return }  // counted when claimed
            let until = now.addingTimeInterval(lockDuration).unixMilliseconds
            try await rows("UPDATE accounts SET failed_attempts = 0, locked_until = \(until) WHERE name = \(name)")
        case .abandoned:
            try await rows(
                """
                UPDATE accounts SET
                    failed_attempts = GREATEST(failed_attempts - 1, 0),
                    locked_until = CASE WHEN \(ownLock) THEN NULL ELSE locked_until END
                WHERE name = \(name)
                """)
        }
    }

    @discardableResult
    public func resetFailedLogins(name: String) async throws -> Bool {
        try await !rows("UPDATE accounts SET failed_attempts = 0 WHERE name = \(name) RETURNING name").isEmpty
    }

    @discardableResult
    public func unlock(name: String) async throws -> Bool {
        try await !rows(
            "UPDATE accounts SET failed_attempts = 0, locked_until = NULL WHERE name = \(name) RETURNING name").isEmpty
    }
}
