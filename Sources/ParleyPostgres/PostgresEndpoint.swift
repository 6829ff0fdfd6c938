import Foundation
import ParleyStore
import PostgresNIO

/// A parsed URL plus the password, turned into postgres-nio's two configuration types (the pool's
/// and the single migration connection's), so both always agree.
struct PostgresEndpoint: Sendable {
    let url: PostgresURL
    private let password: String?

    init(url: PostgresURL, password: DatabasePassword?) {
        self.url = url
        self.password = password?.value
    }

    var clientConfiguration: PostgresClient.Configuration {
        switch url.endpoint {
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS = switch url.tls {
            case .disable: .disable
            case .require: .require(.makeClientConfiguration())
            }
            return .init(host: host, port: port, username: url.user, password: password, database: url.database, tls: tls)
        case .unixSocket(let directory, let port):
            return .init(unixSocketPath: Self.socketPath(directory, port), username: url.user, password: password,
                         database: url.database)
        }
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        switch url.endpoint {
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS
            switch url.tls {
            case .disable: tls = .disable
            case .require:
                do {
                    tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                } catch {
                    throw StoreError.setupFailed("cannot set up TLS to the database: \(error)")
                }
            }
            return .init(host: host, port: port, username: url.user, password: password, database: url.database, tls: tls)
        case .unixSocket(let directory, let port):
            return .init(unixSocketPath: Self.socketPath(directory, port), username: url.user, password: password,
                         database: url.database)
        }
    }

    /// libpq's convention: `host=/dir` means the socket `/dir/.s.PGSQL.PORT`.
    private static func socketPath(_ directory: String, _ port: Int) -> String {
        (directory.hasSuffix("/") ? String(directory.dropLast()) : directory) + "/.s.PGSQL.\(port)"
    }
}

extension DatabasePassword {
    /// The environment variable that may hold the database password.
    public static let environmentVariable = "PARLEY_DB_PASSWORD"

    /// The password from `file` if given (it must be a regular file of mode 0600 or stricter,
    /// first line, newline stripped), else from `PARLEY_DB_PASSWORD`, else none.
    public static func load(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(DatabasePasswordError) -> DatabasePassword?
    {
        guard let file else {
            return environment[environmentVariable].flatMap { $0.isEmpty ? nil : DatabasePassword($0) }
        }
        var info = stat()
        guard stat(file, &info) == 0 else { throw .unreadable(file, String(cString: strerror(errno))) }
        guard info.st_mode & mode_t(S_IFMT) == mode_t(S_IFREG) else { throw .notARegularFile(file) }
        guard info.st_mode & mode_t(0o077) == 0 else { throw .tooOpen(file, Int(info.st_mode & 0o777)) }
        guard let data = FileManager.default.contents(atPath: file) else { throw .unreadable(file, "cannot read") }
        guard data.count <= 4096, let text = String(data: data, encoding: .utf8) else { throw .malformed(file) }
        let line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let password = line.hasSuffix("\r") ? String(line.dropLast()) : String(line)
        guard !password.isEmpty else { throw .malformed(file) }
        return DatabasePassword(password)
    }
}

/// Why the password file was refused (never showing its content).
public enum DatabasePasswordError: Error, Sendable, Hashable, CustomStringConvertible {
    case unreadable(String, String)
    case notARegularFile(String)
    case tooOpen(String, Int)
    case malformed(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read the database password file \(path): \(reason)"
        case .notARegularFile(let path): "the database password file \(path) is not a regular file"
        case .tooOpen(let path, let mode):
            "the database password file \(path) has mode \(String(mode, radix: 8)); it must be 0600 (chmod 600 \(path))"
        case .malformed(let path): "the database password file \(path) must hold the password on its first line (at most 4 KiB, UTF-8)"
        }
    }
}

extension PostgresURL {
    /// One dedicated connection's configuration, built like the store's (for the cluster bus's
    /// LISTEN and statement connections, which must reach the same database the same way).
    public func connectionConfiguration(password: DatabasePassword?) throws -> PostgresConnection.Configuration {
        try PostgresEndpoint(url: self, password: password).connectionConfiguration()
    }
}
