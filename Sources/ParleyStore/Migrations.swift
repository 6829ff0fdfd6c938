/// One schema step. Steps are append-only: never edit a shipped one, add a new version instead.
struct Migration: Sendable {
    let version: Int
    let statements: [String]
}

/// The SQLite schema, in order. Times are INTEGER unix milliseconds so they sort and compare the
/// same in SQLite and PostgreSQL; AUTOINCREMENT keeps delivery ids from being reused after the
/// newest message is acknowledged, so a stale ack can never delete a newer message.
enum SQLiteSchema {
    static let migrations: [Migration] = [
        Migration(version: 1, statements: [
            """
            CREATE TABLE accounts (
                name TEXT NOT NULL PRIMARY KEY,
                display_name TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                failed_attempts INTEGER NOT NULL DEFAULT 0,
                locked_until INTEGER,
                created_at INTEGER NOT NULL
            )
            """,
            """
            CREATE TABLE blocks (
                blocker TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                blocked TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (blocker, blocked)
            )
            """,
            "CREATE INDEX blocks_by_blocked ON blocks (blocked)",
            """
            CREATE TABLE offline_messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                recipient TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                sender TEXT NOT NULL,
                body TEXT NOT NULL,
                sent_at INTEGER NOT NULL
            )
            """,
            "CREATE INDEX offline_messages_by_recipient ON offline_messages (recipient, id)",
            """
            CREATE TABLE sessions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                name TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                login_at INTEGER NOT NULL,
                logout_at INTEGER
            )
            """,
            "CREATE INDEX sessions_by_name_open ON sessions (name, logout_at)",
            "CREATE INDEX sessions_by_login ON sessions (login_at)",
            "CREATE INDEX sessions_by_logout ON sessions (logout_at)",
        ]),
        // An operator can disable an account (refused at login) without deleting what it owns.
        Migration(version: 2, statements: [
            "ALTER TABLE accounts ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0",
        ]),
    ]

    static var latestVersion: Int { migrations.last?.version ?? 0 }
}
