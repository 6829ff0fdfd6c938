/// A command typed by a person at the terminal client's prompt.
public enum UserCommand: Sendable, Hashable {
    case message(to: String, text: String)
    case broadcast(text: String)
    case whoelse
    case whoelsesince(seconds: Int64)
    case block(user: String)
    case unblock(user: String)
    case logout
    /// Change the password: the old and new ones are then read like the login password, never from this line.
    case passwd
    case help
    case startPrivate(user: String)
    /// `private USER TEXT`: a message over the peer-to-peer private session.
    case privateMessage(to: String, text: String)
    case stopPrivate(user: String)
    /// `verify USER`: show the private peer's key fingerprint for out-of-band comparison.
    case verify(user: String)

    private enum Arguments { case none, user, text, userText, seconds }

    private struct Spec {
        let name: String
        let arguments: Arguments
        let usage: String
        let summary: String
    }

    // One table drives parsing, usage strings, help and completion so they cannot drift apart.
    private static let specs: [Spec] = [
        Spec(name: "message", arguments: .userText, usage: "message USER TEXT", summary: "send TEXT to USER (kept for later if offline)"),
        Spec(name: "broadcast", arguments: .text, usage: "broadcast TEXT", summary: "send TEXT to everyone online"),
        Spec(name: "whoelse", arguments: .none, usage: "whoelse", summary: "list the other users online"),
        Spec(name: "whoelsesince", arguments: .seconds, usage: "whoelsesince SECONDS", summary: "list users online in the last SECONDS"),
        Spec(name: "block", arguments: .user, usage: "block USER", summary: "stop receiving anything from USER"),
        Spec(name: "unblock", arguments: .user, usage: "unblock USER", summary: "undo block USER"),
        Spec(name: "logout", arguments: .none, usage: "logout", summary: "log out and quit"),
        Spec(name: "passwd", arguments: .none, usage: "passwd", summary: "change your password (asked for without echo)"),
        Spec(name: "help", arguments: .none, usage: "help", summary: "show this list"),
        Spec(name: "startprivate", arguments: .user, usage: "startprivate USER", summary: "ask USER for a direct private session"),
        Spec(name: "private", arguments: .userText, usage: "private USER TEXT", summary: "send TEXT over the private session with USER"),
        Spec(name: "stopprivate", arguments: .user, usage: "stopprivate USER", summary: "end the private session with USER"),
        Spec(name: "verify", arguments: .user, usage: "verify USER", summary: "show USER's private-session key fingerprint"),
    ]

    /// Every command word, for tab completion.
    public static let allNames: [String] = specs.map(\.name)

    /// The list shown by `help`: one command per line with a short description.
    public static let helpText: String = {
        let width = specs.map(\.usage.count).max()! + 2
        return specs.map { spec in
            "  " + spec.usage + String(repeating: " ", count: width - spec.usage.count) + spec.summary
        }.joined(separator: "\n")
    }()

    /// The usage line for a command word, e.g. "Usage: message USER TEXT".
    public static func usage(of name: String) -> String? {
        specs.first { $0.name == name }.map { "Usage: " + $0.usage }
    }

    /// Parses one typed line. Command words are case-insensitive; TEXT is kept verbatim.
    public static func parse(_ line: String) -> Result<UserCommand, CommandParseError> {
        var rest = Substring(line)
        while let last = rest.last, last == "\n" || last == "\r" || last == "\r\n" { rest.removeLast() }
        rest = rest.drop(while: isBlank)
        guard !rest.isEmpty else { return .failure(.empty) }
        let word = rest.prefix(while: { !isBlank($0) })
        rest = rest[word.endIndex...].drop(while: isBlank)
        let name = String(word).lowercased()
        guard let spec = specs.first(where: { $0.name == name }) else {
            return .failure(.unknownCommand(String(word), suggestion: suggestion(for: name)))
        }
        let usage = CommandParseError.usage("Usage: " + spec.usage)
        switch spec.arguments {
        case .none:
            guard rest.allSatisfy(isBlank) else { return .failure(usage) }
            switch name {
            case "whoelse": return .success(.whoelse)
            case "logout": return .success(.logout)
            case "passwd": return .success(.passwd)
            default: return .success(.help)
            }
        case .user:
            let user = rest.prefix(while: { !isBlank($0) })
            guard !user.isEmpty, rest[user.endIndex...].allSatisfy(isBlank) else { return .failure(usage) }
            let u = String(user)
            switch name {
            case "block": return .success(.block(user: u))
            case "unblock": return .success(.unblock(user: u))
            case "startprivate": return .success(.startPrivate(user: u))
            case "stopprivate": return .success(.stopPrivate(user: u))
            default: return .success(.verify(user: u))
            }
        case .seconds:
            let token = rest.prefix(while: { !isBlank($0) })
            guard !token.isEmpty, rest[token.endIndex...].allSatisfy(isBlank),
                  token.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let seconds = Int64(token)
            else { return .failure(usage) }
            return .success(.whoelsesince(seconds: seconds))
        case .text:
            guard !rest.allSatisfy(isBlank) else { return .failure(usage) }
            return .success(.broadcast(text: String(rest)))
        case .userText:
            let user = rest.prefix(while: { !isBlank($0) })
            let text = rest[user.endIndex...].drop(while: isBlank)
            guard !user.isEmpty, !text.isEmpty else { return .failure(usage) }
            return .success(name == "message"
                ? .message(to: String(user), text: String(text))
                : .privateMessage(to: String(user), text: String(text)))
        }
    }

    private static func isBlank(_ c: Character) -> Bool { c == " " || c == "\t" }

    /// Whether a typed line must stay out of the editor's history: a `passwd` line never carries a
    /// password, but one typed there by mistake (`passwd old new`) must not be kept or recalled.
    public static func keepsOutOfHistory(_ line: String) -> Bool {
        let word = line.drop(while: isBlank).prefix(while: { !isBlank($0) })
        return word.lowercased() == "passwd"
    }

    /// A known command close to `typed`: a unique prefix match, else the nearest within edit distance 2.
    static func suggestion(for typed: String) -> String? {
        let t = Array(typed.utf8)
        guard !t.isEmpty, t.count <= 32 else { return nil }
        let prefixed = allNames.filter { $0.utf8.starts(with: t) }
        if prefixed.count == 1 { return prefixed[0] }
        var best: (name: String, distance: Int)?
        for name in allNames {
            let d = editDistance(t, Array(name.utf8))
            if d <= 2, d < (best?.distance ?? .max) { best = (name, d) }
        }
        return best?.name
    }

    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        guard !a.isEmpty else { return b.count }
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...a.count {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}

/// Why a typed line is not a valid command; `message` is what to show the person.
public enum CommandParseError: Error, Sendable, Hashable {
    /// Blank line: nothing to do.
    case empty
    /// Known command with wrong arguments; carries the usage line.
    case usage(String)
    /// Not a command; carries the typed word and a close known command, if any.
    case unknownCommand(String, suggestion: String?)

    /// The text to print.
    public var message: String {
        switch self {
        case .empty: ""
        case .usage(let usage): usage
        case .unknownCommand(_, let suggestion?):
            "Error. Invalid command. Did you mean '\(suggestion)'? (type help for the list of commands)"
        case .unknownCommand(_, nil): "Error. Invalid command (type help for the list of commands)"
        }
    }
}

extension UserCommand {
    /// The command word, as used in JSON output's `command` field.
    public var name: String {
        switch self {
        case .message: "message"
        case .broadcast: "broadcast"
        case .whoelse: "whoelse"
        case .whoelsesince: "whoelsesince"
        case .block: "block"
        case .unblock: "unblock"
        case .logout: "logout"
        case .passwd: "passwd"
        case .help: "help"
        case .startPrivate: "startprivate"
        case .privateMessage: "private"
        case .stopPrivate: "stopprivate"
        case .verify: "verify"
        }
    }
}
