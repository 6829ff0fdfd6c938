/// A client-to-server request; the JSON `"type"` member selects the case.
public enum Request: Sendable, Hashable {
    /// Log in, registering the account when the name is new (if registration is open).
    case login(username: String, password: String, version: Int64 = Limits.protocolVersion)
    /// Send `text` to one user (stored for later if they are offline).
    case message(to: String, text: String)
    /// Send `text` to every online user except those who blocked the sender.
    case broadcast(text: String)
    /// List the other users currently online.
    case whoelse
    /// List the other users online now or within the last `seconds`.
    case whoelsesince(seconds: Int64)
    /// Stop receiving messages and presence from `user`.
    case block(user: String)
    /// Undo `block`.
    case unblock(user: String)
    /// End the session.
    case logout
    /// Change the logged-in user's password; `old` is checked like a login (and counts towards the lockout).
    case passwd(old: String, new: String)
    /// Acknowledge that the offline message with this delivery id was shown, so it can be deleted.
    case ack(delivery: Int64)
    /// The user did something (e.g. chatted privately) that should count against the idle timeout.
    case active
    /// Ask `user` for a private session; `fingerprint` is the requester's SPKI SHA-256 (hex).
    case startPrivate(user: String, fingerprint: String)
    /// Answer a private request from `user`; on accept, where to connect and what key to expect.
    case privateAnswer(user: String, accept: Bool, port: UInt16?, fingerprint: String?)
    /// End the private session with `user`.
    case stopPrivate(user: String)

    /// The wire name of this request's type.
    public var typeName: String {
        switch self {
        case .login: "login"
        case .message: "message"
        case .broadcast: "broadcast"
        case .whoelse: "whoelse"
        case .whoelsesince: "whoelsesince"
        case .block: "block"
        case .unblock: "unblock"
        case .logout: "logout"
        case .passwd: "passwd"
        case .ack: "ack"
        case .active: "active"
        case .startPrivate: "startprivate"
        case .privateAnswer: "privateanswer"
        case .stopPrivate: "stopprivate"
        }
    }

    /// Decodes one frame (without its newline). Errors carry the request id when it was readable.
    public static func decode(bytes: UnsafeRawBufferPointer) throws(ProtocolError) -> (id: Int64?, request: Request) {
        let (f, type) = try parseFrameObject(bytes)
        let request: Request
        switch type {
        case "login":
            request = .login(
                username: try f.string("username"), password: try f.string("password"),
                version: try f.optionalInteger("version") ?? Limits.protocolVersion)
        case "message": request = .message(to: try f.string("to"), text: try f.string("text"))
        case "broadcast": request = .broadcast(text: try f.string("text"))
        case "whoelse": request = .whoelse
        case "whoelsesince": request = .whoelsesince(seconds: try f.nonNegative("seconds"))
        case "block": request = .block(user: try f.string("user"))
        case "unblock": request = .unblock(user: try f.string("user"))
        case "logout": request = .logout
        case "passwd": request = .passwd(old: try f.string("old"), new: try f.string("new"))
        case "ack": request = .ack(delivery: try f.integer("delivery"))
        case "active": request = .active
        case "startprivate":
            request = .startPrivate(user: try f.string("user"), fingerprint: try f.fingerprint("fingerprint"))
        case "privateanswer":
            request = .privateAnswer(
                user: try f.string("user"), accept: try f.bool("accept"),
                port: try f.port("port"), fingerprint: try f.optionalFingerprint("fingerprint"))
        case "stopprivate": request = .stopPrivate(user: try f.string("user"))
        default: throw ProtocolError(.unknownType, "unknown request type '\(type)'", id: f.id)
        }
        return (f.id, request)
    }

    /// Decodes one frame from a byte array.
    public static func decode(bytes: [UInt8]) throws(ProtocolError) -> (id: Int64?, request: Request) {
        let r: Result<(id: Int64?, request: Request), ProtocolError> = bytes.withUnsafeBytes { raw in
            do throws(ProtocolError) { return .success(try decode(bytes: raw)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// Appends this request as one complete frame, including the trailing newline.
    public func encode<Out: JSONOutput>(id: Int64?, to out: inout Out) {
        switch self {
        case .login(let username, let password, let version):
            out.beginObject(type: "login")
            out.field("username", username)
            out.field("password", password)
            out.field("version", version)
        case .message(let to, let text):
            out.beginObject(type: "message")
            out.field("to", to)
            out.field("text", text)
        case .broadcast(let text):
            out.beginObject(type: "broadcast")
            out.field("text", text)
        case .whoelse: out.beginObject(type: "whoelse")
        case .whoelsesince(let seconds):
            out.beginObject(type: "whoelsesince")
            out.field("seconds", seconds)
        case .block(let user):
            out.beginObject(type: "block")
            out.field("user", user)
        case .unblock(let user):
            out.beginObject(type: "unblock")
            out.field("user", user)
        case .logout: out.beginObject(type: "logout")
        case .passwd(let old, let new):
            out.beginObject(type: "passwd")
            out.field("old", old)
            out.field("new", new)
        case .ack(let delivery):
            out.beginObject(type: "ack")
            out.field("delivery", delivery)
        case .active: out.beginObject(type: "active")
        case .startPrivate(let user, let fingerprint):
            out.beginObject(type: "startprivate")
            out.field("user", user)
            out.field("fingerprint", fingerprint)
        case .privateAnswer(let user, let accept, let port, let fingerprint):
            out.beginObject(type: "privateanswer")
            out.field("user", user)
            out.field("accept", accept)
            out.field("port", port.map(Int64.init))
            out.field("fingerprint", fingerprint)
        case .stopPrivate(let user):
            out.beginObject(type: "stopprivate")
            out.field("user", user)
        }
        out.field("id", id)
        out.endFrame()
    }
}

extension Request: CustomStringConvertible, CustomDebugStringConvertible {
    /// The request as its wire JSON with every password replaced, so printing or logging a request
    /// (by mistake or in a test) can never show one.
    public var description: String {
        var bytes: [UInt8] = []
        switch self {
        case .login(let username, _, let version):
            Request.login(username: username, password: "<redacted>", version: version).encode(id: nil, to: &bytes)
        case .passwd:
            Request.passwd(old: "<redacted>", new: "<redacted>").encode(id: nil, to: &bytes)
        default:
            encode(id: nil, to: &bytes)
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    public var debugDescription: String { description }
}
