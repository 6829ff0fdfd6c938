import Foundation
internal import SQLiteNIO

// Every operation is one statement with bound parameters; see SQLiteStore's doc for why.

extension SQLiteStore {
    // MARK: Accounts

    public func createAccount(name: String, displayName: String, passwordHash: String) async throws -> Bool {
        let rows = try await query(
            """
            INSERT INTO accounts (name, display_name, password_hash, failed_attempts, locked_until, created_at)
            VALUES (?, ?, ?, 0, NULL, ?)
            ON CONFLICT (name) DO NOTHING
            RETURNING name
            """,
            [.text(name), .text(displayName), .text(passwordHash), .int64(Date().unixMilliseconds)])
        return !rows.isEmpty
    }

    public func account(named name: String) async throws -> Account? {
        try await query("SELECT \(Self.accountColumns) FROM accounts WHERE name = ?", [.text(name)])
            .first.map(Self.account(from:))
    }

    @discardableResult
    public func updatePasswordHash(name: String, passwordHash: String) async throws -> Bool {
        try await !query("UPDATE accounts SET password_hash = ? WHERE name = ? RETURNING name",
                         [.text(passwordHash), .text(name)]).isEmpty
    }

    public func listAccounts() async throws -> [Account] {
        try await query("SELECT \(Self.accountColumns) FROM accounts ORDER BY name").map(Self.account(from:))
    }

    @discardableResult
    public func setDisabled(name: String, disabled: Bool) async throws -> Bool {
        try await !query("UPDATE accounts SET disabled = ? WHERE name = ? RETURNING name",
                         [.integer(disabled ? 1 : 0), .text(name)]).isEmpty
    }

    @discardableResult
    public func deleteAccount(name: String) async throws -> Bool {
        // One statement is one transaction: the schema's ON DELETE CASCADE removes the messages
        // queued for the account, blocks either way and its sessions with it (foreign_keys is on
        // for this connection). Statements of other callers cannot interleave inside it.
        try await !query("DELETE FROM accounts WHERE name = ? RETURNING name", [.text(name)]).isEmpty
    }

    private static let accountColumns =
        "name, display_name, password_hash, failed_attempts, locked_until, created_at, disabled"

    private static func account(from row: SQLiteRow) throws -> Account {
        Account(name: try row.text("name"), displayName: try row.text("display_name"),
                passwordHash: try row.text("password_hash"),
                failedAttempts: Int(try row.int("failed_attempts")),
                lockedUntil: row.optionalInt("locked_until").map(Date.init(unixMilliseconds:)),
                createdAt: Date(unixMilliseconds: try row.int("created_at")),
                disabled: try row.int("disabled") != 0)
    }

    // MARK: Lockout

    public func recordFailedLogin(name: String, now: Date, threshold: Int, lockDuration: TimeInterval)
        async throws -> FailedLoginOutcome
    {
        precondition(threshold >= 1, "lockout threshold must be at least 1")
        let until = now.addingTimeInterval(lockDuration).unixMilliseconds
        // SET expressions all see the row's old values, so both CASEs test the same count. A
        // returned counter of 0 can only mean this increment reached the threshold and reset it.
        let rows = try await query(
            """
            UPDATE accounts SET
                failed_attempts = CASE WHEN failed_attempts + 1 >= ? THEN 0 ELSE failed_attempts + 1 END,
                locked_until = CASE WHEN failed_attempts + 1 >= ? THEN ? ELSE locked_until END
            WHERE name = ?
            RETURNING failed_attempts, locked_until
            """,
            [.integer(threshold), .integer(threshold), .int64(until), .text(name)])
        guard let row = rows.first else { return .unknownAccount }
        let attempts = try row.int("failed_attempts")
        if attempts == 0, let lockedUntil = row.optionalInt("locked_until") {
            return .locked(until: Date(unixMilliseconds: lockedUntil))
        }
        return .counted(failedAttempts: Int(attempts))
    }

    public func claimLoginAttempt(name: String, now: Date, threshold: Int, lockDuration: TimeInterval)
        async throws -> LoginAttemptClaim
    {
        precondition(threshold >= 1, "lockout threshold must be at least 1")
        let nowMs = now.unixMilliseconds
        // One statement checks the lock and counts the attempt, so two claims can never both see
        // the account unlocked at the threshold. The lock set here (at the threshold) covers the
        // check under way: a crash mid-check leaves a lock that expires, never a stuck counter. An
        // expired lock is cleared here and counting starts again at 1.
        let rows = try await query(
            """
            UPDATE accounts SET
                failed_attempts = CASE WHEN locked_until IS NULL THEN failed_attempts + 1 ELSE 1 END,
                locked_until = CASE WHEN (CASE WHEN locked_until IS NULL THEN failed_attempts + 1 ELSE 1 END) >= ?
                    THEN ? ELSE NULL END
            WHERE name = ? AND (locked_until IS NULL OR locked_until <= ?)
            RETURNING failed_attempts
            """,
            [.integer(threshold), .int64(now.addingTimeInterval(lockDuration).unixMilliseconds), .text(name),
             .int64(nowMs)])
        if let row = rows.first { return .claimed(attempt: Int(try row.int("failed_attempts"))) }
        guard let account = try await account(named: name) else { return .unknownAccount }
        // Unlocked again between the two statements: still refused, the caller may simply retry.
        return .locked(until: account.lockedUntil ?? now)
    }

    public func settleLoginAttempt(name: String, attempt: Int, threshold: Int, outcome: LoginAttemptOutcome,
                                   now: Date, lockDuration: TimeInterval) async throws
    {
        let reachedThreshold = attempt >= threshold
        switch outcome {
        case .succeeded:
            // Only the claim that set the lock may lift it; an operator's or another node's lock stays.
            try await query(
                "UPDATE accounts SET failed_attempts = 0, locked_until = CASE WHEN ? THEN NULL ELSE locked_until END WHERE name = ?",
                [.integer(reachedThreshold ? 1 : 0), .text(name)])
        case .failed:
            guard reachedThreshold else { return }  // counted when claimed
            try await query(
                "UPDATE accounts SET failed_attempts = 0, locked_until = ? WHERE name = ?",
                [.int64(now.addingTimeInterval(lockDuration).unixMilliseconds), .text(name)])
        case .abandoned:
            try await query(
                """
                UPDATE accounts SET
                    failed_attempts = MAX(failed_attempts - 1, 0),
                    locked_until = CASE WHEN ? THEN NULL ELSE locked_until END
                WHERE name = ?
                """,
                [.integer(reachedThreshold ? 1 : 0), .text(name)])
        }
    }

    @discardableResult
    public func resetFailedLogins(name: String) async throws -> Bool {
        try await !query("UPDATE accounts SET failed_attempts = 0 WHERE name = ? RETURNING name",
                         [.text(name)]).isEmpty
    }

    @discardableResult
    public func unlock(name: String) async throws -> Bool {
        try await !query(
            "UPDATE accounts SET failed_attempts = 0, locked_until = NULL WHERE name = ? RETURNING name",
            [.text(name)]).isEmpty
    }

    // MARK: Blocks

    public func block(blocker: String, blocked: String) async throws -> Bool {
        try await !query(
            """
            INSERT INTO blocks (blocker, blocked, created_at) VALUES (?, ?, ?)
            ON CONFLICT (blocker, blocked) DO NOTHING
            RETURNING blocker
            """,
            [.text(blocker), .text(blocked), .int64(Date().unixMilliseconds)]).isEmpty
    }

    public func unblock(blocker: String, blocked: String) async throws -> Bool {
        try await !query("DELETE FROM blocks WHERE blocker = ? AND blocked = ? RETURNING blocker",
                         [.text(blocker), .text(blocked)]).isEmpty
    }

    public func blockedUsers(by blocker: String) async throws -> Set<String> {
        Set(try await query("SELECT blocked FROM blocks WHERE blocker = ?", [.text(blocker)])
            .map { try $0.text("blocked") })
    }

    public func usersBlocking(_ blocked: String) async throws -> Set<String> {
        Set(try await query("SELECT blocker FROM blocks WHERE blocked = ?", [.text(blocked)])
            .map { try $0.text("blocker") })
    }

    public func isBlocked(blocker: String, blocked: String) async throws -> Bool {
        try await !query("SELECT 1 AS present FROM blocks WHERE blocker = ? AND blocked = ?",
                         [.text(blocker), .text(blocked)]).isEmpty
    }

    // MARK: Offline messages

    public func enqueueOfflineMessage(to recipient: String, from sender: String, text: String, sentAt: Date)
        async throws -> Int64
    {
        let rows = try await query(
            "INSERT INTO offline_messages (recipient, sender, body, sent_at) VALUES (?, ?, ?, ?) RETURNING id",
            [.text(recipient), .text(sender), .text(text), .int64(sentAt.unixMilliseconds)])
        guard let row = rows.first else { throw StoreError.backend("insert returned no id") }
        return try row.int("id")
    }

    public func pendingMessages(for recipient: String, after afterID: Int64, limit: Int) async throws
        -> [StoredMessage]
    {
        try await query(
            """
            SELECT id, recipient, sender, body, sent_at FROM offline_messages
            WHERE recipient = ? AND id > ? ORDER BY id LIMIT ?
            """,
            [.text(recipient), .int64(afterID), .integer(max(0, limit))]
        ).map { row in
            StoredMessage(id: try row.int("id"), recipient: try row.text("recipient"),
                          sender: try row.text("sender"), text: try row.text("body"),
                          sentAt: Date(unixMilliseconds: try row.int("sent_at")))
        }
    }

    public func enqueueOfflineMessage(to recipient: String, from sender: String, text: String, sentAt: Date, quota: Int)
        async throws -> Int64?
    {
        // Counted through the (recipient, id) index; SQLite runs the statement as one step.
        let rows = try await query(
            """
            INSERT INTO offline_messages (recipient, sender, body, sent_at)
            SELECT ?, ?, ?, ? WHERE (SELECT COUNT(*) FROM offline_messages WHERE recipient = ?) < ?
            RETURNING id
            """,
            [.text(recipient), .text(sender), .text(text), .int64(sentAt.unixMilliseconds), .text(recipient),
             .integer(max(0, quota))])
        guard let row = rows.first else { return nil }
        return try row.int("id")
    }

    public func pendingMessageTotal() async throws -> Int {
        let rows = try await query("SELECT COUNT(*) AS n FROM offline_messages", [])
        return Int(try rows.first?.int("n") ?? 0)
    }

    public func pendingMessageCount(for recipient: String) async throws -> Int {
        let rows = try await query("SELECT COUNT(*) AS n FROM offline_messages WHERE recipient = ?",
                                   [.text(recipient)])
        return Int(try rows.first?.int("n") ?? 0)
    }

    @discardableResult
    public func acknowledge(delivery id: Int64, for recipient: String) async throws -> Bool {
        try await !query("DELETE FROM offline_messages WHERE id = ? AND recipient = ? RETURNING id",
                         [.int64(id), .text(recipient)]).isEmpty
    }

    // MARK: Login history

    public func recordLogin(name: String, at time: Date) async throws {
        try await query("INSERT INTO sessions (name, login_at, logout_at) VALUES (?, ?, NULL)",
                        [.text(name), .int64(time.unixMilliseconds)])
    }

    @discardableResult
    public func recordLogout(name: String, at time: Date) async throws -> Bool {
        try await !query(
            """
            UPDATE sessions SET logout_at = ?
            WHERE id = (SELECT id FROM sessions WHERE name = ? AND logout_at IS NULL ORDER BY id DESC LIMIT 1)
            RETURNING id
            """,
            [.int64(time.unixMilliseconds), .text(name)]).isEmpty
    }

    public func usersActive(since: Date) async throws -> Set<String> {
        let ms = since.unixMilliseconds
        return Set(try await query(
            "SELECT DISTINCT name FROM sessions WHERE login_at >= ? OR logout_at >= ? OR logout_at IS NULL",
            [.int64(ms), .int64(ms)]
        ).map { try $0.text("name") })
    }

    @discardableResult
    public func closeOpenLogins(at time: Date) async throws -> Int {
        try await query("UPDATE sessions SET logout_at = ? WHERE logout_at IS NULL RETURNING id",
                        [.int64(time.unixMilliseconds)]).count
    }
}
