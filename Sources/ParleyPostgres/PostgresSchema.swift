import PostgresNIO

/// One schema step. Steps are append-only: never edit a shipped one, add a new version instead.
struct PostgresMigration: Sendable {
    let version: Int
    let statements: [PostgresQuery]
}

/// The PostgreSQL schema, in order. It mirrors the SQLite one: times are BIGINT unix milliseconds
/// (the same values in both backends) and ids are BIGSERIAL, never reused, so a stale ack can never
/// delete a newer message.
enum PostgresSchema {
    /// Key of the advisory lock that serialises migrations of several nodes starting at once.
    static let migrationLockKey: Int64 = 0x5041_524C_4559  // "PARLEY"

    static let migrations: [PostgresMigration] = [
        PostgresMigration(version: 1, statements: [
            """
            CREATE TABLE accounts (
                name TEXT NOT NULL PRIMARY KEY,
                display_name TEXT NOT NULL,
                password_hash TEXT NOT NULL,
                failed_attempts BIGINT NOT NULL DEFAULT 0,
                locked_until BIGINT,
                created_at BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE blocks (
                blocker TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                blocked TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (blocker, blocked)
            )
            """,
            "CREATE INDEX blocks_by_blocked ON blocks (blocked)",
            """
            CREATE TABLE offline_messages (
                id BIGSERIAL PRIMARY KEY,
                recipient TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                sender TEXT NOT NULL,
                body TEXT NOT NULL,
                sent_at BIGINT NOT NULL
            )
            """,
            "CREATE INDEX offline_messages_by_recipient ON offline_messages (recipient, id)",
            """
            CREATE TABLE sessions (
                id BIGSERIAL PRIMARY KEY,
                name TEXT NOT NULL REFERENCES accounts(name) ON DELETE CASCADE,
                login_at BIGINT NOT NULL,
                logout_at BIGINT
            )
            """,
            "CREATE INDEX sessions_by_name_open ON sessions (name, logout_at)",
            "CREATE INDEX sessions_by_login ON sessions (login_at)",
            "CREATE INDEX sessions_by_logout ON sessions (logout_at)",
        ]),
    ]

    static var latestVersion: Int { migrations.last?.version ?? 0 }
}
