/// The server's answer to one request, echoing the request's `id` when it had one.
public struct Reply: Sendable, Hashable {
    /// The id of the request this answers (absent when the request had none or it was unreadable).
    public var id: Int64?
    /// Success with an optional payload, or a coded error.
    public var outcome: Outcome

    /// Success or failure of a request.
    public enum Outcome: Sendable, Hashable {
        case ok(ReplyPayload)
        case error(code: ErrorCode, message: String)
    }

    public init(id: Int64?, outcome: Outcome) {
        self.id = id
        self.outcome = outcome
    }

    /// A successful reply.
    public static func ok(id: Int64?, _ payload: ReplyPayload = .none) -> Reply {
        Reply(id: id, outcome: .ok(payload))
    }

    /// A failed reply; `message` defaults to the code's standard text.
    public static func error(id: Int64?, _ code: ErrorCode, message: String? = nil) -> Reply {
        Reply(id: id, outcome: .error(code: code, message: message ?? code.defaultMessage))
    }

    /// The failed reply for a request that could not be decoded.
    public static func error(_ error: ProtocolError) -> Reply {
        Reply(id: error.id, outcome: .error(code: error.code, message: error.message))
    }
}

/// Extra data carried by a successful reply; at most one kind per reply.
public enum ReplyPayload: Sendable, Hashable {
    /// Nothing beyond "ok".
    case none
    /// Usernames, for `whoelse` and `whoelsesince`.
    case users([String])
    /// A successful login: the name as registered, and whether this login created the account.
    case login(username: String, created: Bool)
    /// A broadcast: `unreachable` is true when some online users blocked the sender.
    case broadcast(unreachable: Bool)
}

extension Reply {
    func encodeFields<Out: JSONOutput>(to out: inout Out) {
        out.field("id", id)
        switch outcome {
        case .ok(let payload):
            out.field("status", "ok")
            switch payload {
            case .none: break
            case .users(let users): out.field("users", users)
            case .login(let username, let created):
                out.field("username", username)
                out.field("created", created)
            case .broadcast(let unreachable): out.field("unreachable", unreachable)
            }
        case .error(let code, let message):
            out.field("status", "error")
            out.field("code", code.rawValue)
            out.field("message", message)
        }
    }

    static func decode(_ f: Fields) throws(ProtocolError) -> Reply {
        switch try f.string("status") {
        case "ok":
            let payload: ReplyPayload
            if f.members["users"] != nil {
                payload = .users(try f.stringArray("users"))
            } else if let username = try f.optionalString("username") {
                payload = .login(username: username, created: try f.optionalBool("created") ?? false)
            } else if let unreachable = try f.optionalBool("unreachable") {
                payload = .broadcast(unreachable: unreachable)
            } else {
                payload = .none
            }
            return .ok(id: f.id, payload)
        case "error":
            // A code from a newer server is still an error; surface it as `internal` with its text.
            let code = ErrorCode(rawValue: try f.string("code")) ?? .internal
            return .error(id: f.id, code, message: try f.optionalString("message"))
        default:
            throw ProtocolError(.badFrame, "expected \"ok\" or \"error\" for field 'status'")
        }
    }
}
