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
        // The cluster (ParleyClusterPostgres): live nodes with their leases (the database's clock),
        // who is online on which node (the primary key makes one login per name atomic), and
        // notification payloads too large for NOTIFY, sent by reference to their row.
        PostgresMigration(version: 2, statements: [
            """
            CREATE TABLE cluster_nodes (
                id TEXT NOT NULL PRIMARY KEY,
                name TEXT NOT NULL,
                lease_until TIMESTAMPTZ NOT NULL,
                started_at TIMESTAMPTZ NOT NULL
            )
            """,
            """
            CREATE TABLE cluster_online (
                name TEXT NOT NULL PRIMARY KEY,
                display_name TEXT NOT NULL,
                node_id TEXT NOT NULL,
                since TIMESTAMPTZ NOT NULL
            )
            """,
            "CREATE INDEX cluster_online_by_node ON cluster_online (node_id)",
            """
            CREATE TABLE cluster_payloads (
                id BIGSERIAL PRIMARY KEY,
                body TEXT NOT NULL,
                created_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """,
        ]),
        // Accounts an operator disabled (`parley-server user disable`, `admin disable`). Version 3:
        // version 2 is the cluster's membership tables.
        PostgresMigration(version: 3, statements: [
            "ALTER TABLE accounts ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE",
        ]),
    ]

    static var latestVersion: Int { migrations.last?.version ?? 0 }
}
