import ParleyProtocol

/// Tab-completion candidates for a partly typed line: command words first, then usernames.
public enum Completion {
    /// Commands whose first argument is a username.
    static let userArgumentCommands: Set<String> = [
        "message", "block", "unblock", "startprivate", "private", "stopprivate", "verify",
    ]

    /// What to complete: the word being typed (`prefix`) and the matches, sorted.
    public struct Result: Sendable, Hashable {
        /// The partial word left of the cursor that the candidates replace.
        public var prefix: String
        /// Full words that start with `prefix` (case-insensitively).
        public var candidates: [String]

        /// The longest text every candidate shares after the prefix (what to insert on Tab).
        public var commonSuffix: String {
            guard var common = candidates.first.map(Array.init) else { return "" }
            for candidate in candidates.dropFirst() {
                let c = Array(candidate)
                var n = 0
                while n < common.count, n < c.count, common[n].lowercased() == c[n].lowercased() { n += 1 }
                common.removeLast(common.count - n)
            }
            return String(common.dropFirst(prefix.count))
        }
    }

    /// Candidates for the text left of the cursor, given the usernames currently known online.
    public static func candidates(beforeCursor text: String, users: Set<String>) -> Result {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        let trimmed = text.drop(while: isBlank)
        let words = trimmed.split(whereSeparator: isBlank).map(String.init)
        let endsInBlank = trimmed.last.map(isBlank) ?? false
        // Index of the word under the cursor, and its typed part.
        let index = endsInBlank ? words.count : max(words.count - 1, 0)
        let prefix = endsInBlank ? "" : (words.last ?? "")
        let pool: [String]
        switch index {
        case 0: pool = UserCommand.allNames
        // Only names the server could have registered: a completion goes into the edit line, so a
        // name with control characters from a broken or hostile server must never get there.
        case 1 where userArgumentCommands.contains(words[0].lowercased()): pool = Array(users).filter(Validation.isValidUsername)
        default: pool = []
        }
        let lowered = prefix.lowercased()
        let matches = pool.filter { $0.lowercased().hasPrefix(lowered) }.sorted()
        return Result(prefix: prefix, candidates: matches)
    }
}

/// The usernames believed to be online, kept up to date from presence events and whoelse replies.
public struct OnlineUsers: Sendable, Hashable {
    /// Current names, as the server spells them.
    public private(set) var names: Set<String> = []

    public init() {}

    /// Applies a presence event; other events are ignored.
    public mutating func apply(_ event: ServerMessage) {
        guard case .presence(let user, let online) = event else { return }
        // Names are case-insensitive on the server: drop any other spelling of the same user.
        let key = Validation.canonicalUsername(user)
        names = names.filter { Validation.canonicalUsername($0) != key }
        if online { names.insert(user) }
    }

    /// Applies a reply: a `whoelse` list replaces the set (it is authoritative); `whoelsesince`
    /// may name users who already left, so it is ignored.
    public mutating func apply(reply: Reply, command: UserCommand) {
        guard case .whoelse = command, case .ok(.users(let users)) = reply.outcome else { return }
        names = Set(users)
    }
}
