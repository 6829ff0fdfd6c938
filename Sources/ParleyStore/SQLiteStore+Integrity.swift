import Foundation
import Logging
import NIOCore
import NIOPosix
internal import SQLiteNIO

extension SQLiteStore {
    /// `PRAGMA quick_check` on the open database: the problems SQLite reports, empty when the
    /// file is sound. (quick_check skips only the index-content cross-check of `integrity_check`,
    /// so it stays fast enough to run at every start.)
    public func quickCheck() async throws -> [String] {
        let rows = try await query("PRAGMA quick_check")
        return Self.problems(in: rows.compactMap { $0.columns.first?.data.string })
    }

    /// `PRAGMA quick_check` on an existing file without migrating or configuring it, for
    /// `parley-server check` (which may run beside a live server: WAL lets it read).
    /// Throws `StoreError.setupFailed` when the file is missing or SQLite cannot read it at all.
    public static func quickCheck(
        path: String,
        threadPool: NIOThreadPool = .singleton,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "parley.store")
    ) async throws -> [String] {
        guard !path.hasPrefix("file:"), FileManager.default.fileExists(atPath: path) else {
            throw StoreError.setupFailed("no database file at \(path)")
        }
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger, on: eventLoopGroup.any())
        } catch {
            throw StoreError.setupFailed("\(error)")
        }
        do {
            let rows = try await connection.query("PRAGMA quick_check")
            try? await connection.close()
            return problems(in: rows.compactMap { $0.columns.first?.data.string })
        } catch {
            try? await connection.close()
            throw StoreError.backend("\(error)")
        }
    }

    /// quick_check answers one row "ok", or one row per problem.
    private static func problems(in lines: [String]) -> [String] {
        lines == ["ok"] ? [] : (lines.isEmpty ? ["quick_check returned nothing"] : lines)
    }
}
