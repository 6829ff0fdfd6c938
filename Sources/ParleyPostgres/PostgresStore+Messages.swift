import Foundation
import ParleyStore
import PostgresNIO

// Blocks, offline messages and login history: each contract one statement.

extension PostgresStore {
    // MARK: Blocks

    public func block(blocker: String, blocked: String) async throws -> Bool {
        try await !rows(
            """
            INSERT INTO blocks (blocker, blocked, created_at) VALUES (\(blocker), \(blocked), \(Date().unixMilliseconds))
            ON CONFLICT (blocker, blocked) DO NOTHING
            RETURNING blocker
            """).isEmpty
    }

    public func unblock(blocker: String, blocked: String) async throws -> Bool {
        try await !rows("DELETE FROM blocks WHERE blocker = \(blocker) AND blocked = \(blocked) RETURNING blocker").isEmpty
    }

    public func blockedUsers(by blocker: String) async throws -> Set<String> {
        Set(try await rows("SELECT blocked FROM blocks WHERE blocker = \(blocker)").map { try $0.decode(String.self) })
    }

    public func usersBlocking(_ blocked: String) async throws -> Set<String> {
        Set(try await rows("SELECT blocker FROM blocks WHERE blocked = \(blocked)").map { try $0.decode(String.self) })
    }

    public func isBlocked(blocker: String, blocked: String) async throws -> Bool {
        try await !rows("SELECT 1 FROM blocks WHERE blocker = \(blocker) AND blocked = \(blocked)").isEmpty
    }

    // MARK: Offline messages

    public func enqueueOfflineMessage(to recipient: String, from sender: String, text: String, sentAt: Date)
        async throws -> Int64
    {
        let result = try await rows(
            """
            INSERT INTO offline_messages (recipient, sender, body, sent_at)
            VALUES (\(recipient), \(sender), \(text), \(sentAt.unixMilliseconds)) RETURNING id
            """)
        guard let row = result.first else { throw StoreError.backend("insert returned no id") }
        return try row.decode(Int64.self)
    }

    public func pendingMessages(for recipient: String, after afterID: Int64, limit: Int) async throws
        -> [StoredMessage]
    {
        try await rows(
            """
            SELECT id, recipient, sender, body, sent_at FROM offline_messages
            WHERE recipient = \(recipient) AND id > \(afterID) ORDER BY id LIMIT \(Int64(max(0, limit)))
            """
        ).map { row in
            let (id, recipient, sender, body, sentAt) = try row.decode((Int64, String, String, String, Int64).self)
            return StoredMessage(id: id, recipient: recipient, sender: sender, text: body,
                                 sentAt: Date(unixMilliseconds: sentAt))
        }
    }

    public func pendingMessageCount(for recipient: String) async throws -> Int {
        let result = try await rows("SELECT COUNT(*) FROM offline_messages WHERE recipient = \(recipient)")
        return Int(try result.first?.decode(Int64.self) ?? 0)
    }

    @discardableResult
    public func acknowledge(delivery id: Int64, for recipient: String) async throws -> Bool {
        try await !rows("DELETE FROM offline_messages WHERE id = \(id) AND recipient = \(recipient) RETURNING id").isEmpty
    }

    // MARK: Login history

    public func recordLogin(name: String, at time: Date) async throws {
        try await rows("INSERT INTO sessions (name, login_at, logout_at) VALUES (\(name), \(time.unixMilliseconds), NULL)")
    }

    @discardableResult
    public func recordLogout(name: String, at time: Date) async throws -> Bool {
        // SKIP LOCKED: two logouts of one name at once close two sessions, not the same one twice;
        // the outer IS NULL re-check keeps a session closed meanwhile from being closed again.
        try await !rows(
            """
            UPDATE sessions SET logout_at = \(time.unixMilliseconds)
            WHERE logout_at IS NULL AND id = (
                SELECT id FROM sessions WHERE name = \(name) AND logout_at IS NULL
                ORDER BY id DESC LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id
            """).isEmpty
    }

    public func usersActive(since: Date) async throws -> Set<String> {
        let ms = since.unixMilliseconds
        return Set(try await rows(
            "SELECT DISTINCT name FROM sessions WHERE login_at >= \(ms) OR logout_at >= \(ms) OR logout_at IS NULL"
        ).map { try $0.decode(String.self) })
    }

    @discardableResult
    public func closeOpenLogins(at time: Date) async throws -> Int {
        try await rows("UPDATE sessions SET logout_at = \(time.unixMilliseconds) WHERE logout_at IS NULL RETURNING id").count
    }
}
