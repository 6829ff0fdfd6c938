/// Why the server ended a session.
public enum LogoutReason: String, Sendable, Hashable, CaseIterable {
    case timeout, logout
    case serverShutdown = "server_shutdown"
    /// The client did not read fast enough and its outbound queue overflowed.
    case slowConsumer = "slow_consumer"
    /// The server operator logged the user out (`parley-server admin kick`).
    case kicked
    /// The server operator disabled the account (`parley-server admin disable`).
    case disabled
    /// Wrong old passwords given to `passwd` locked the name; the session ends with it.
    case accountLocked = "account_locked"
    /// The client kept sending commands after they were refused as `rate_limited`.
    case flooding
}

/// A server-to-client frame: the greeting, replies to requests, and unsolicited events.
public enum ServerMessage: Sendable, Hashable {
    /// First frame on every connection: the protocol version and a server description.
    case hello(version: Int64, server: String)
    /// The answer to a request.
    case reply(Reply)
    /// A direct message; `delivery` is set for stored offline messages that must be acked.
    case message(from: String, text: String, delivery: Int64? = nil, sent: Int64? = nil)
    /// A broadcast from another user.
    case broadcast(from: String, text: String)
    /// A user logged in (`online`) or out.
    case presence(user: String, online: Bool)
    /// The session is over; the server closes the connection after this.
    case loggedOut(reason: LogoutReason)
    /// `from` asks for a private session.
    case privateRequest(from: String)
    /// `user` accepted: connect to `host:port` and expect the key with this fingerprint.
    case privateAccepted(user: String, host: String, port: UInt16, fingerprint: String, linkID: String)
    /// `user` declined the private request.
    case privateDeclined(user: String)
    /// A private session with `user` was set up; expect their key with this fingerprint.
    case privateStarted(user: String, fingerprint: String, linkID: String)
    /// The private session with `user` ended.
    case privateStopped(user: String, reason: String)
    /// An unsolicited error, e.g. after a frame too large to find its id.
    case error(code: ErrorCode, message: String)

    /// Appends this message as one complete frame, including the trailing newline.
    public func encode<Out: JSONOutput>(to out: inout Out) {
        switch self {
        case .hello(let version, let server):
            out.beginObject(type: "hello")
            out.field("version", version)
            out.field("server", server)
        case .reply(let reply):
            out.beginObject(type: "reply")
            reply.encodeFields(to: &out)
        case .message(let from, let text, let delivery, let sent):
            out.beginObject(type: "message")
            out.field("from", from)
            out.field("text", text)
            out.field("delivery", delivery)
            out.field("sent", sent)
        case .broadcast(let from, let text):
            out.beginObject(type: "broadcast")
            out.field("from", from)
            out.field("text", text)
        case .presence(let user, let online):
            out.beginObject(type: "presence")
            out.field("user", user)
            out.field("online", online)
        case .loggedOut(let reason):
            out.beginObject(type: "loggedout")
            out.field("reason", reason.rawValue)
        case .privateRequest(let from):
            out.beginObject(type: "privaterequest")
            out.field("from", from)
        case .privateAccepted(let user, let host, let port, let fingerprint, let linkID):
            out.beginObject(type: "privateaccepted")
            out.field("user", user)
            out.field("host", host)
            out.field("port", Int64(port))
            out.field("fingerprint", fingerprint)
            out.field("session", linkID)
        case .privateDeclined(let user):
            out.beginObject(type: "privatedeclined")
            out.field("user", user)
        case .privateStarted(let user, let fingerprint, let linkID):
            out.beginObject(type: "privatestarted")
            out.field("user", user)
            out.field("fingerprint", fingerprint)
            out.field("session", linkID)
        case .privateStopped(let user, let reason):
            out.beginObject(type: "privatestopped")
            out.field("user", user)
            out.field("reason", reason)
        case .error(let code, let message):
            out.beginObject(type: "error")
            out.field("code", code.rawValue)
            out.field("message", message)
        }
        out.endFrame()
    }

    /// Decodes one frame (client side). Unknown `type`s throw `unknown_type` so clients can skip them.
    public static func decode(bytes: UnsafeRawBufferPointer) throws(ProtocolError) -> ServerMessage {
        let (f, type) = try parseFrameObject(bytes)
        switch type {
        case "hello": return .hello(version: try f.integer("version"), server: try f.string("server"))
        case "reply": return .reply(try Reply.decode(f))
        case "message":
            return .message(
                from: try f.string("from"), text: try f.string("text"),
                delivery: try f.optionalInteger("delivery"), sent: try f.optionalInteger("sent"))
        case "broadcast": return .broadcast(from: try f.string("from"), text: try f.string("text"))
        case "presence": return .presence(user: try f.string("user"), online: try f.bool("online"))
        case "loggedout":
            guard let reason = LogoutReason(rawValue: try f.string("reason")) else {
                throw ProtocolError(.badFrame, "unknown value for field 'reason'")
            }
            return .loggedOut(reason: reason)
        case "privaterequest": return .privateRequest(from: try f.string("from"))
        case "privateaccepted":
            guard let port = try f.port("port") else { throw ProtocolError(.badFrame, "missing field 'port'") }
            return .privateAccepted(
                user: try f.string("user"), host: try f.string("host"), port: port,
                fingerprint: try f.fingerprint("fingerprint"), linkID: try f.string("session"))
        case "privatedeclined": return .privateDeclined(user: try f.string("user"))
        case "privatestarted":
            return .privateStarted(
                user: try f.string("user"), fingerprint: try f.fingerprint("fingerprint"),
                linkID: try f.string("session"))
        case "privatestopped": return .privateStopped(user: try f.string("user"), reason: try f.string("reason"))
        case "error":
            let code = ErrorCode(rawValue: try f.string("code")) ?? .internal
            return .error(code: code, message: try f.optionalString("message") ?? code.defaultMessage)
        default: throw ProtocolError(.unknownType, "unknown message type '\(type)'")
        }
    }

    /// Decodes one frame from a byte array.
    public static func decode(bytes: [UInt8]) throws(ProtocolError) -> ServerMessage {
        let r: Result<ServerMessage, ProtocolError> = bytes.withUnsafeBytes { raw in
            do throws(ProtocolError) { return .success(try decode(bytes: raw)) } catch { return .failure(error) }
        }
        return try r.get()
    }
}
