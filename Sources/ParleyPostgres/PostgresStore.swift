import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyStore
import PostgresNIO

/// `ChatStore` on one PostgreSQL database through postgres-nio's `PostgresClient` (a pool), so
/// that several servers can share one database.
///
/// Atomicity: every operation is one SQL statement with bound parameters (upserts, `UPDATE ...
/// RETURNING`, CTEs), so it holds under READ COMMITTED with any number of callers on any number of
/// nodes; no operation reads and then writes in two steps. Migrations run at `open` on a dedicated
/// connection, one transaction per step under an advisory lock.
///
/// Lifecycle: the pool only serves leases while `run()` is running, so the store owns that task:
/// it starts in `open` and is cancelled (the pool drains and closes its connections) in `close`.
/// A lost connection (database restart) fails the queries running on it; the pool opens new
/// connections for the next ones.
public final class PostgresStore: ChatStore {
    /// Newest schema version this build understands, stored in the `schema_version` table.
    public static var schemaVersion: Int { PostgresSchema.latestVersion }

    let client: PostgresClient
    private let runTask: Task<Void, Never>
    /// For postgres-nio: never below notice, because its debug and trace output show queries.
    let logger: Logger

    private init(client: PostgresClient, runTask: Task<Void, Never>, logger: Logger) {
        self.client = client
        self.runTask = runTask
        self.logger = logger
    }

    /// Connects, applies pending migrations and starts the pool. Fails at once (not after the
    /// pool's retries) when the database cannot be reached, with an error that names the URL
    /// but never the password.
    public static func open(
        url: PostgresURL,
        password: DatabasePassword?,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        maximumConnections: Int = 20,
        logger: Logger = Logger(label: "parley.store")
    ) async throws -> PostgresStore {
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .notice)
        let endpoint = PostgresEndpoint(url: url, password: password)
        try await migrate(endpoint: endpoint, eventLoopGroup: eventLoopGroup, logger: quiet, reportTo: logger)

        var configuration = endpoint.clientConfiguration
        configuration.options.maximumConnections = max(1, maximumConnections)
        let client = PostgresClient(configuration: configuration, eventLoopGroup: eventLoopGroup,
                                    backgroundLogger: quiet)
        let runTask = Task { await client.run() }
        return PostgresStore(client: client, runTask: runTask, logger: quiet)
    }

    public func close() async throws {
        runTask.cancel()
        await runTask.value
    }

    /// The schema version recorded in the database (0 before the first migration).
    public func storedSchemaVersion() async throws -> Int {
        try await rows("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version")
            .first.map { Int(try $0.decode(Int64.self)) } ?? 0
    }

    // MARK: Migrations

    /// Each pending step in its own transaction that first takes a transaction-scoped advisory
    /// lock and re-reads the version: of several nodes starting at once, one applies each step
    /// and the others see it done. A step that fails rolls back whole.
    private static func migrate(endpoint: PostgresEndpoint, eventLoopGroup: any EventLoopGroup, logger: Logger,
                                reportTo report: Logger) async throws
    {
        let connection = try await connectOnce(endpoint, eventLoopGroup: eventLoopGroup, logger: logger)
        do {
            try await apply(on: connection, logger: logger, reportTo: report)
        } catch {
            try? await connection.close()
            throw error
        }
        try? await connection.close()
    }

    /// One connection outside the pool (migrations, `check`); a failure names the URL, never the password.
    static func connectOnce(_ endpoint: PostgresEndpoint, eventLoopGroup: any EventLoopGroup, logger: Logger) async throws
        -> PostgresConnection
    {
        do {
            return try await PostgresConnection.connect(
                on: eventLoopGroup.any(), configuration: try endpoint.connectionConfiguration(), id: 0, logger: logger)
        } catch {
            throw StoreError.setupFailed("cannot connect to \(endpoint.url): \(PostgresErrors.summary(error))")
        }
    }

    private static func apply(on connection: PostgresConnection, logger: Logger, reportTo report: Logger) async throws {
        do {
            for migration in PostgresSchema.migrations {
                let applied = try await connection.withTransaction(logger: logger) { tx -> Bool in
                    try await tx.query("SELECT pg_advisory_xact_lock(\(PostgresSchema.migrationLockKey))", logger: logger)
                    try await tx.query(
                        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
                        logger: logger)
                    let current = try await tx.query(
                        "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version", logger: logger
                    ).collect().first.map { Int(try $0.decode(Int64.self)) } ?? 0
                    guard current <= PostgresSchema.latestVersion else {
                        throw StoreError.schemaTooNew(found: current, supported: PostgresSchema.latestVersion)
                    }
                    guard migration.version > current else { return false }
                    for statement in migration.statements { try await tx.query(statement, logger: logger) }
                    try await tx.query(
                        "INSERT INTO schema_version (version, applied_at) VALUES (\(migration.version), \(Date().unixMilliseconds))",
                        logger: logger)
                    return true
                }
                if applied { report.info("applied schema migration", metadata: ["version": "\(migration.version)"]) }
            }
        } catch let error as PostgresTransactionError {
            if let inner = error.closureError as? StoreError { throw inner }
            throw StoreError.setupFailed("schema migration failed: \(PostgresErrors.summary(error))")
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError.setupFailed("schema migration failed: \(PostgresErrors.summary(error))")
        }
    }

    // MARK: Helpers

    /// Runs one statement and collects its rows; every failure becomes a `StoreError`.
    @discardableResult
    func rows(_ query: PostgresQuery) async throws -> [PostgresRow] {
        do {
            return try await client.query(query, logger: logger).collect()
        } catch {
            throw PostgresErrors.storeError(error)
        }
    }
}

/// Maps postgres-nio's errors to `StoreError`, with text that is safe to log: the SQL state and the
/// server's message, never the query's bound values (password hashes, messages) nor the password.
enum PostgresErrors {
    static func storeError(_ error: any Error) -> StoreError {
        if let error = error as? StoreError { return error }
        // A transaction's own failure is the one inside it (begin, the closure, or the commit).
        if let error = error as? PostgresTransactionError,
            let inner = error.closureError ?? error.beginError ?? error.commitError
        {
            return storeError(inner)
        }
        if let error = error as? PSQLError, error.serverInfo?[.sqlState] == PostgresError.Code.foreignKeyViolation.raw {
            return .unknownAccount
        }
        return .backend(summary(error))
    }

    static func summary(_ error: any Error) -> String {
        switch error {
        case let error as PSQLError:
            if let info = error.serverInfo {
                return "\(info[.sqlState] ?? "?"): \(info[.message] ?? "server error")"
            }
            switch error.code {
            case .connectionError:
                // Connecting failed: the socket's own reason (refused, unreachable) says why.
                if let nio = error.underlying as? NIOConnectionError, let first = nio.connectionErrors.first {
                    return "connection failed: \(first.error)"
                }
                return "connection failed" + (error.underlying.map { ": \($0)" } ?? "")
            case .serverClosedConnection, .uncleanShutdown:
                return "database connection lost (\(error.code))"
            case .poolClosed, .clientClosedConnection: return "the store is closed"
            default:
                return "\(error.code)" + (error.underlying.map { ": \(type(of: $0)) \($0)" } ?? "")
            }
        case let error as PostgresTransactionError:
            let inner = error.closureError ?? error.beginError ?? error.commitError ?? error.rollbackError
            return inner.map(summary) ?? "transaction failed"
        default:
            return String(describing: error)
        }
    }
}

extension Date {
    var unixMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
    init(unixMilliseconds ms: Int64) { self.init(timeIntervalSince1970: Double(ms) / 1000) }
}
