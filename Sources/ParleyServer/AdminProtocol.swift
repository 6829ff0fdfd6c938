import Foundation
import ParleyProtocol

/// The admin socket's line protocol: the client sends one request line, the server answers with
/// zero or more body lines and one status line (`ok [text]` or `error CODE text`), then closes.
/// The status line is always the last; a reply without one was cut off.
public enum AdminProtocol {
    /// Longest request line accepted (longer ones are refused without being buffered).
    public static let maxRequestBytes = 512
    /// How long the server waits for the request line before closing the connection.
    public static let requestTimeout: TimeInterval = 10
}

/// One operator request on the admin socket.
public enum AdminRequest: Sendable, Hashable {
    /// Online users with their address, login time and idle time.
    case who
    /// Logs the user out at once (`loggedout`, reason `kicked`).
    case kick(String)
    /// Disables the account in the store and logs the user out at once if online (reason `disabled`).
    case disable(String)
    /// Asks the server to reload its configuration.
    case reload

    /// The request as sent on the socket (without the newline).
    public var line: String {
        switch self {
        case .who: "who"
        case .kick(let name): "kick \(name)"
        case .disable(let name): "disable \(name)"
        case .reload: "reload"
        }
    }

    /// Parses one request line; names are checked against the username rule, not canonicalised.
    public static func parse(_ line: String) throws(AdminError) -> AdminRequest {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard let verb = words.first else { throw AdminError(.unknownCommand, "empty request") }
        let arguments = words.dropFirst()
        func noArguments(_ request: AdminRequest) throws(AdminError) -> AdminRequest {
            guard arguments.isEmpty else { throw AdminError(.badRequest, "\(verb) takes no arguments") }
            return request
        }
        func oneName(_ make: (String) -> AdminRequest) throws(AdminError) -> AdminRequest {
            guard arguments.count == 1, let name = arguments.first else {
                throw AdminError(.badRequest, "usage: \(verb) NAME")
            }
            guard Validation.isValidUsername(name) else { throw AdminError(.invalidUsername, "invalid username \(name)") }
            return make(name)
        }
        switch verb {
        case "who": return try noArguments(.who)
        case "reload": return try noArguments(.reload)
        case "kick": return try oneName(AdminRequest.kick)
        case "disable": return try oneName(AdminRequest.disable)
        default: throw AdminError(.unknownCommand, "unknown command; known: who, kick NAME, disable NAME, reload")
        }
    }
}

/// Stable codes of the admin socket's errors (the second word of an `error` status line).
public enum AdminErrorCode: String, Sendable, Hashable, CaseIterable {
    /// The first word is not a command the server knows.
    case unknownCommand = "unknown_command"
    /// Wrong arguments, a line too long, or not UTF-8.
    case badRequest = "bad_request"
    /// The name breaks the username rule.
    case invalidUsername = "invalid_username"
    /// No account has that name.
    case noSuchUser = "no_such_user"
    /// `kick` of a user who is not logged in.
    case notOnline = "not_online"
    /// The connecting process runs as another user than the server (and is not root).
    case permissionDenied = "permission_denied"
    /// The request is valid but this server cannot carry it out (e.g. no reload action).
    case unavailable = "unavailable"
    /// The server failed (store error, or it is stopping).
    case `internal` = "internal"
}

/// A refused or failed admin request.
public struct AdminError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: AdminErrorCode
    public var message: String

    public init(_ code: AdminErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// A complete answer on the admin socket.
public struct AdminReply: Sendable, Hashable {
    /// Lines shown as they are (e.g. the `who` table).
    public var body: [String]
    /// Success with a short summary (may be empty), or the error.
    public var outcome: Outcome

    public enum Outcome: Sendable, Hashable {
        case ok(String)
        case error(AdminError)
    }

    public init(body: [String] = [], _ outcome: Outcome) {
        self.body = body
        self.outcome = outcome
    }

    public static func ok(_ summary: String = "", body: [String] = []) -> AdminReply { AdminReply(body: body, .ok(summary)) }
    public static func error(_ error: AdminError) -> AdminReply { AdminReply(.error(error)) }

    /// The reply's bytes: each body line, then the status line, each ending in a newline. Body
    /// text is the server's own (names are validated), so no line can contain a newline.
    public var encoded: String {
        let status: String = switch outcome {
        case .ok(let summary): summary.isEmpty ? "ok" : "ok \(summary)"
        case .error(let error): "error \(error.code.rawValue) \(error.message)"
        }
        return (body + [status]).map { $0 + "\n" }.joined()
    }

    /// Reads a reply from the lines received before the server closed; nil when the last line is
    /// not a status line (the reply was cut off).
    public static func decode(lines: [String]) -> AdminReply? {
        guard let status = lines.last else { return nil }
        let body = Array(lines.dropLast())
        if status == "ok" { return .ok(body: body) }
        if status.hasPrefix("ok ") { return .ok(String(status.dropFirst(3)), body: body) }
        guard status.hasPrefix("error ") else { return nil }
        let parts = status.dropFirst(6).split(separator: " ", maxSplits: 1).map(String.init)
        // A code from a newer server is still an error; its text is kept.
        let code = parts.first.flatMap(AdminErrorCode.init(rawValue:)) ?? .internal
        return AdminReply(body: body, .error(AdminError(code, parts.count > 1 ? parts[1] : "")))
    }
}

/// Who may use the admin socket: the server's own user, or root.
public enum AdminAccess {
    /// Whether a peer running as `peer` may talk to a server running as `server` (fail closed:
    /// an unknown peer is refused).
    public static func allows(peer: UInt32?, server: UInt32) -> Bool {
        guard let peer else { return false }
        return peer == server || peer == 0
    }
}

/// The `who` table.
enum WhoTable {
    static func lines(_ sessions: [OnlineSession]) -> [String] {
        let rows = sessions.sorted { $0.name.lowercased() < $1.name.lowercased() }.map { session in
            [session.name, session.address, timestamp(session.loginTime), duration(seconds: session.idle.nanoseconds / 1_000_000_000)]
        }
        let header = ["NAME", "ADDRESS", "LOGIN (UTC)", "IDLE"]
        let table = [header] + rows
        let widths = (0..<header.count).map { column in table.map { $0[column].count }.max() ?? 0 }
        return table.map { row in
            row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column] + 2, withPad: " ", startingAt: 0)
            }.joined()
        }
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    /// `42s`, `3m07s`, `2h05m`.
    static func duration(seconds: Int64) -> String {
        let s = max(0, seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(String(format: "%02d", s % 60))s" }
        return "\(s / 3600)h\(String(format: "%02d", (s % 3600) / 60))m"
    }
}
