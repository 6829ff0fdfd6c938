import Foundation

/// Where a PostgreSQL database is, parsed from `postgresql://USER@HOST:PORT/DB` or
/// `postgresql://USER@/DB?host=/socket/dir`. It never holds a password: that comes from the
/// environment or a 0600 file (`DatabasePassword`), so the URL can be shown and logged as it is.
public struct PostgresURL: Sendable, Hashable, CustomStringConvertible {
    /// How to reach the server.
    public enum Endpoint: Sendable, Hashable {
        case tcp(host: String, port: Int)
        /// The directory holding the server's socket `.s.PGSQL.PORT` (libpq's `host=/dir`).
        case unixSocket(directory: String, port: Int)
    }

    /// Whether the connection to the database is encrypted.
    public enum TLSMode: String, Sendable, Hashable {
        /// Plain TCP: the default for loopback addresses and Unix sockets, where there is no wire to protect.
        case disable
        /// TLS with the system's trust roots and a hostname check (stricter than libpq's `require`,
        /// which does not verify): the default for every other host, so a remote database fails closed.
        case require
    }

    public var endpoint: Endpoint
    public var user: String
    public var database: String
    public var tls: TLSMode

    public static let defaultPort = 5432

    /// Whether `text` names a PostgreSQL database (anything else is a SQLite path).
    public static func isPostgres(_ text: String) -> Bool {
        schemes.contains { text.lowercased().hasPrefix($0) }
    }

    private static let schemes = ["postgresql://", "postgres://"]

    public init(endpoint: Endpoint, user: String, database: String, tls: TLSMode? = nil) {
        self.endpoint = endpoint
        self.user = user
        self.database = database
        self.tls = tls ?? (Self.isLocal(endpoint) ? .disable : .require)
    }

    /// Parses a URL; the error says in one line what is wrong.
    public init(parsing text: String) throws(PostgresURLError) {
        guard let scheme = Self.schemes.first(where: { text.lowercased().hasPrefix($0) }) else {
            throw .notPostgres
        }
        var rest = Substring(text.dropFirst(scheme.count))
        var parameters: [(String, String)] = []
        if let question = rest.firstIndex(of: "?") {
            parameters = try Self.parameters(rest[rest.index(after: question)...])
            rest = rest[..<question]
        }
        guard let slash = rest.firstIndex(of: "/") else { throw .missingDatabase }
        let authority = rest[..<slash]
        let database = try Self.decode(rest[rest.index(after: slash)...], what: "database name")
        guard !database.isEmpty, !database.contains("/") else { throw .missingDatabase }

        var user: String?
        var hostPart = authority
        if let at = authority.lastIndex(of: "@") {
            let userInfo = authority[..<at]
            // A password here would sit in argv and in the process list for anyone to read.
            guard !userInfo.contains(":") else { throw .passwordInURL }
            user = try Self.decode(userInfo, what: "user name")
            hostPart = authority[authority.index(after: at)...]
        }
        var (host, port) = try Self.hostAndPort(hostPart)

        for (key, value) in parameters {
            switch key {
            case "host": host = value
            case "port":
                guard let number = Int(value), (1...65535).contains(number) else { throw .badPort(value) }
                port = number
            case "user": user = value
            case "sslmode": break
            default: throw .unknownParameter(key)
            }
        }
        let tlsText = parameters.last(where: { $0.0 == "sslmode" })?.1
        var tls: TLSMode?
        if let tlsText {
            guard let mode = TLSMode(rawValue: tlsText) else { throw .badSSLMode(tlsText) }
            tls = mode
        }
        guard let host, !host.isEmpty else { throw .missingHost }
        let endpoint: Endpoint = host.hasPrefix("/")
            ? .unixSocket(directory: host, port: port ?? Self.defaultPort)
            : .tcp(host: host, port: port ?? Self.defaultPort)
        if case .unixSocket = endpoint, tls == .require { throw .tlsOverSocket }
        guard let user = user ?? Self.currentUser(), !user.isEmpty else { throw .missingUser }
        self.init(endpoint: endpoint, user: user, database: database, tls: tls)
    }

    /// The URL again, normalised (no password: there is none).
    public var description: String {
        let db = database.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? database
        let u = user.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed) ?? user
        switch endpoint {
        case .tcp(let host, let port):
            let shown = host.contains(":") ? "[\(host)]" : host
            return "postgresql://\(u)@\(shown):\(port)/\(db)?sslmode=\(tls.rawValue)"
        case .unixSocket(let directory, let port):
            return "postgresql://\(u)@/\(db)?host=\(directory)&port=\(port)"
        }
    }

    /// Loopback addresses and sockets: the traffic never leaves the machine.
    static func isLocal(_ endpoint: Endpoint) -> Bool {
        switch endpoint {
        case .unixSocket: true
        case .tcp(let host, _): host == "localhost" || host == "::1" || host.hasPrefix("127.")
        }
    }

    private static func hostAndPort(_ text: Substring) throws(PostgresURLError) -> (String?, Int?) {
        if text.isEmpty { return (nil, nil) }
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .malformed("unclosed [ in the host") }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .malformed("unexpected text after ]") }
                portText = after.dropFirst()
            }
        } else if let colon = text.firstIndex(of: ":") {
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        } else {
            host = text
        }
        var port: Int?
        if let portText {
            guard let number = Int(portText), (1...65535).contains(number) else { throw .badPort(String(portText)) }
            port = number
        }
        return (try decode(host, what: "host"), port)
    }

    private static func parameters(_ text: Substring) throws(PostgresURLError) -> [(String, String)] {
        var result: [(String, String)] = []
        for pair in text.split(separator: "&") {
            guard let equals = pair.firstIndex(of: "=") else { throw .malformed("parameter \(pair) has no value") }
            let key = try decode(pair[..<equals], what: "parameter name")
            // A password parameter would be as visible in argv as one in the user part.
            guard key != "password" else { throw .passwordInURL }
            result.append((key, try decode(pair[pair.index(after: equals)...], what: "parameter \(key)")))
        }
        return result
    }

    private static func decode(_ text: Substring, what: String) throws(PostgresURLError) -> String {
        guard let decoded = String(text).removingPercentEncoding, !decoded.contains("\0") else {
            throw .malformed("bad percent-encoding in the \(what)")
        }
        return decoded
    }

    /// libpq's default user: the name of the user running the program.
    private static func currentUser() -> String? {
        guard let entry = getpwuid(geteuid()), let name = entry.pointee.pw_name else { return nil }
        return String(cString: name)
    }
}

/// Why a database URL was refused; `description` is the one line shown to the operator.
public enum PostgresURLError: Error, Sendable, Hashable, CustomStringConvertible {
    case notPostgres
    case passwordInURL
    case missingDatabase
    case missingHost
    case missingUser
    case badPort(String)
    case badSSLMode(String)
    case unknownParameter(String)
    case tlsOverSocket
    case malformed(String)

    public var description: String {
        let problem: String = switch self {
        case .notPostgres: "it must start with postgresql:// or postgres://"
        case .passwordInURL:
            "it must not contain a password (set PARLEY_DB_PASSWORD or use --db-password-file)"
        case .missingDatabase: "it must name one database: postgresql://USER@HOST:PORT/DATABASE"
        case .missingHost: "no host: give HOST[:PORT] or ?host=/socket/directory"
        case .missingUser: "no user name: give USER@ before the host"
        case .badPort(let port): "port \(port) is not a number from 1 to 65535"
        case .badSSLMode(let mode): "sslmode \(mode) is not disable or require"
        case .unknownParameter(let key): "unknown parameter \(key) (known: host, port, user, sslmode)"
        case .tlsOverSocket: "sslmode=require does not apply to a Unix socket"
        case .malformed(let what): what
        }
        return "invalid database URL: " + problem
    }
}

/// The database password, kept out of `description` and `debugDescription` so it cannot end up in
/// a log line or an error by accident.
public struct DatabasePassword: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    let value: String

    public init(_ value: String) { self.value = value }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}
