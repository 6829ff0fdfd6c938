import Foundation
import Logging
import NIOCore
import ParleyPostgres
import ParleyStore

/// Which database a server (or an admin command) uses: `--db` as given, parsed once.
public enum StoreLocation: Sendable, Hashable, CustomStringConvertible {
    /// A SQLite file.
    case sqlite(path: String)
    /// A PostgreSQL database (several servers may share it).
    case postgres(PostgresURL)

    /// Anything starting with `postgresql://` or `postgres://` is a PostgreSQL URL (and must parse);
    /// everything else is a SQLite path, as before.
    public init(parsing text: String) throws(PostgresURLError) {
        if PostgresURL.isPostgres(text) {
            self = .postgres(try PostgresURL(parsing: text))
        } else {
            self = .sqlite(path: text)
        }
    }

    /// Opens and migrates the store. The password is used for PostgreSQL only.
    public func open(password: DatabasePassword?, eventLoopGroup: any EventLoopGroup, logger: Logger)
        async throws -> any ChatStore
    {
        switch self {
        case .sqlite(let path):
            return try await SQLiteStore.open(path: path, eventLoopGroup: eventLoopGroup, logger: logger)
        case .postgres(let url):
            return try await PostgresStore.open(url: url, password: password, eventLoopGroup: eventLoopGroup, logger: logger)
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let url): url.description
        }
    }
}
