import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
internal import SQLiteNIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ChatStore` on one SQLite file through sqlite-nio (WAL, synchronous=FULL, foreign keys on).
///
/// Concurrency: sqlite-nio runs every statement on an `NIOThreadPool`, never on an event loop, and
/// opens the handle with SQLITE_OPEN_FULLMUTEX, so concurrent callers are serialized by SQLite
/// itself. Because statements from different callers may interleave on the one connection, every
/// operation after `open` is a single statement (upserts and `RETURNING` instead of
/// read-then-write), which makes each one atomic without explicit transactions.
public final class SQLiteStore: ChatStore {
    /// Newest schema version this build understands, stored in `PRAGMA user_version`.
    public static var schemaVersion: Int { SQLiteSchema.latestVersion }

    private let connection: SQLiteConnection
    private let logger: Logger
    /// Queries in flight and whether close() began: sqlite-nio does not guard a handle against a
    /// query that was queued before close, so the store does (a late query fails, never crashes).
    private let gate = NIOLockedValueBox(Gate())

    private struct Gate {
        var inFlight = 0
        var closing = false
        var drained: [CheckedContinuation<Void, Never>] = []
    }

    private init(connection: SQLiteConnection, logger: Logger) {
        self.connection = connection
        self.logger = logger
    }

    /// Opens (creating if needed, mode 0600) and migrates the database at `path`.
    public static func open(
        path: String,
        threadPool: NIOThreadPool = .singleton,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        busyTimeoutMilliseconds: Int = 5_000,
        logger: Logger = Logger(label: "parley.store")
    ) async throws -> SQLiteStore {
        // sqlite-nio opens with SQLITE_OPEN_URI: a "file:" path would be parsed as a URI naming some
        // other file than the one created 0600 below, so refuse it rather than guess.
        guard !path.hasPrefix("file:"), !path.isEmpty, path != ":memory:" else {
            throw StoreError.setupFailed("database path must be a plain file path")
        }
        try createPrivateFile(path: path, logger: logger)
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger, on: eventLoopGroup.any())
        } catch {
            throw StoreError.setupFailed("\(error)")
        }
        let store = SQLiteStore(connection: connection, logger: logger)
        do {
            try await store.configure(busyTimeoutMilliseconds: busyTimeoutMilliseconds)
            try await store.migrate()
        } catch {
            // Not in this task: if it was cancelled (a sibling open failed), sqlite-nio would skip
            // the close and the handle's deinit would trap.
            await Task { try? await connection.close() }.value
            throw error
        }
        return store
    }

    public func close() async throws {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = gate.withLockedValue { gate -> Bool in
                gate.closing = true
                if gate.inFlight == 0 { return true }
                gate.drained.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
        do {
            try await connection.close()
        } catch {
            throw StoreError.backend("\(error)")
        }
    }

    /// The schema version recorded in the file.
    public func userVersion() async throws -> Int {
        let rows = try await query("PRAGMA user_version")
        return Int(rows.first?.column("user_version")?.integer ?? 0)
    }

    // MARK: Setup

    /// The file holds password hashes and private messages, so it is created 0600 with open(2)
    /// before SQLite sees it (SQLite's own default would be 0644 less umask). SQLite gives the -wal
    /// and -shm files the main file's mode. An existing file that others can read is tightened.
    private static func createPrivateFile(path: String, logger: Logger) throws {
        let fd = posixOpen(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StoreError.setupFailed("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        defer { _ = posixClose(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw StoreError.setupFailed("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        if info.st_mode & 0o077 != 0 {
            logger.warning("database file was readable by others; setting mode 0600",
                           metadata: ["path": .string(path)])
            guard fchmod(fd, 0o600) == 0 else {
                throw StoreError.setupFailed("cannot chmod \(path): \(String(cString: strerror(errno)))")
            }
        }
    }

    private func configure(busyTimeoutMilliseconds: Int) async throws {
        // First: switching to WAL takes a lock, and a second process opening a new file at the same
        // moment must wait for it rather than fail with SQLITE_BUSY. Replaces sqlite-nio's busy
        // handler, which retries forever, with a bounded wait.
        _ = try await query("PRAGMA busy_timeout = \(max(0, busyTimeoutMilliseconds))")
        let mode = try await query("PRAGMA journal_mode = WAL").first?.columns.first?.data.string
        guard mode?.lowercased() == "wal" else {
            throw StoreError.setupFailed("journal_mode is \(mode ?? "unknown"), expected wal")
        }
        // FULL fsyncs the WAL at every commit: an acknowledged offline message or lock survives a
        // power cut, not just a process crash. Writes here are few, so the cost is negligible.
        _ = try await query("PRAGMA synchronous = FULL")
        _ = try await query("PRAGMA foreign_keys = ON")
    }

    /// Applies pending migrations in one IMMEDIATE transaction: the write lock is taken before the
    /// version is read, so two processes opening one file cannot both apply a step.
    private func migrate() async throws {
        _ = try await query("BEGIN IMMEDIATE")
        do {
            let current = try await userVersion()
            guard current <= Self.schemaVersion else {
                throw StoreError.schemaTooNew(found: current, supported: Self.schemaVersion)
            }
            for migration in SQLiteSchema.migrations where migration.version > current {
                for statement in migration.statements {
                    _ = try await query(statement)
                }
                // PRAGMA takes no bound parameters; the value is our own integer constant.
                _ = try await query("PRAGMA user_version = \(migration.version)")
                logger.info("applied schema migration", metadata: ["version": "\(migration.version)"])
            }
            _ = try await query("COMMIT")
        } catch {
            _ = try? await query("ROLLBACK")
            throw error
        }
    }

    // MARK: Helpers

    /// The first column of `PRAGMA name` as text; for diagnostics and tests. `name` is never user input.
    func pragma(_ name: String) async throws -> String? {
        try await query("PRAGMA \(name)").first?.columns.first?.data.string
    }

    @discardableResult
    func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        let admitted = gate.withLockedValue { gate -> Bool in
            guard !gate.closing else { return false }
            gate.inFlight += 1
            return true
        }
        guard admitted else { throw StoreError.backend("the store is closed") }
        defer {
            let waiters = gate.withLockedValue { gate -> [CheckedContinuation<Void, Never>] in
                gate.inFlight -= 1
                guard gate.closing, gate.inFlight == 0 else { return [] }
                defer { gate.drained = [] }
                return gate.drained
            }
            waiters.forEach { $0.resume() }
        }
        // Callers see only StoreError, so the protocol stays free of backend types in errors too.
        do {
            return try await connection.query(sql, binds)
        } catch let error as SQLiteError {
            switch error.reason {
            case .constraintForeignKeyFailed: throw StoreError.unknownAccount
            default: throw StoreError.backend(error.description)
            }
        } catch {
            throw StoreError.backend("\(error)")
        }
    }
}

// File-scope wrappers: inside SQLiteStore, `close` names the store's own method.
private func posixOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { open(path, flags, mode) }
private func posixClose(_ fd: Int32) -> Int32 { close(fd) }

extension Date {
    var unixMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }
    init(unixMilliseconds ms: Int64) { self.init(timeIntervalSince1970: Double(ms) / 1000) }
}

extension SQLiteRow {
    func int(_ name: String) throws -> Int64 {
        guard let value = column(name)?.integer else { throw StoreError.backend("missing integer column \(name)") }
        return Int64(value)
    }

    func optionalInt(_ name: String) -> Int64? {
        guard let data = column(name), !data.isNull else { return nil }
        return data.integer.map { Int64($0) }
    }

    func text(_ name: String) throws -> String {
        guard let value = column(name)?.string else { throw StoreError.backend("missing text column \(name)") }
        return value
    }
}

extension SQLiteData {
    /// sqlite-nio's integer payload is `Int` on 64-bit platforms; keep the conversion in one place.
    static func int64(_ value: Int64) -> SQLiteData { .integer(SQLiteInt64(value)) }
}
