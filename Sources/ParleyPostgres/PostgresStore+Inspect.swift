import Logging
import NIOCore
import NIOPosix
import ParleyStore
import PostgresNIO

/// What `parley-server check` learns from a PostgreSQL database without changing it.
public struct PostgresHealth: Sendable, Equatable {
    /// The server's `server_version` setting, e.g. "15.18 (Debian 15.18-0+deb12u1)".
    public var serverVersion: String
    /// The schema version recorded in the database (0 when Parley never migrated it).
    public var schemaVersion: Int
    /// Tables of Parley's newest schema that the database lacks while claiming its version.
    public var missingTables: [String]
}

extension PostgresStore {
    /// The tables the migrations up to `version` create (read from their SQL): a database that
    /// records the version but lacks one was changed by hand or restored in part.
    static func tables(upTo version: Int) -> [String] {
        PostgresSchema.migrations.filter { $0.version <= version }.flatMap(\.statements).compactMap { statement in
            let words = statement.sql.split(whereSeparator: \.isWhitespace)
            guard words.count > 2, words[0] == "CREATE", words[1] == "TABLE" else { return nil }
            return String(words[2].prefix { $0.isLetter || $0 == "_" || $0.isNumber })
        }
    }

    /// Connects once, reads the server version, the schema version and which core tables exist,
    /// and closes: no migration, no write. Errors name the URL, never the password.
    public static func inspect(
        url: PostgresURL, password: DatabasePassword?,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "parley.check")
    ) async throws -> PostgresHealth {
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .notice)
        let endpoint = PostgresEndpoint(url: url, password: password)
        let connection = try await connectOnce(endpoint, eventLoopGroup: eventLoopGroup, logger: quiet)
        do {
            let version = try await connection.query("SHOW server_version", logger: quiet).collect()
                .first.map { try $0.decode(String.self) } ?? "?"
            let present = Set(try await connection.query(
                "SELECT table_name::TEXT FROM information_schema.tables WHERE table_schema = current_schema()",
                logger: quiet
            ).collect().map { try $0.decode(String.self) })
            var schema = 0
            if present.contains("schema_version") {
                schema = try await connection.query(
                    "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version", logger: quiet
                ).collect().first.map { Int(try $0.decode(Int64.self)) } ?? 0
            }
            try? await connection.close()
            let missing = tables(upTo: schema).filter { !present.contains($0) }
            return PostgresHealth(serverVersion: version, schemaVersion: schema, missingTables: missing)
        } catch {
            try? await connection.close()
            throw StoreError.setupFailed("cannot read \(endpoint.url): \(PostgresErrors.summary(error))")
        }
    }
}
