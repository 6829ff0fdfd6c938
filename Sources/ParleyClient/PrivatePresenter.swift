import ParleyProtocol

/// What the private-session machinery tells the person (human and JSON wording below).
public enum PrivateNotice: Sendable, Hashable {
    /// `from` asks for a private session; a y or n line answers (other lines run as commands).
    case request(from: String)
    /// Reminder after a command typed while the request from `from` still waits for y or n.
    case askAgain(from: String)
    case accepted(user: String)
    case declined(user: String)
    /// The session is open; `safetyCode` must match the one on the other screen.
    case started(user: String, safetyCode: String)
    case message(from: String, text: String)
    /// Our `private` message left (JSON mode only, so scripts can pace themselves).
    case sent(to: String)
    /// We ended the session.
    case stopped(user: String)
    /// The other side, the server, or the network ended it; `reason` says which.
    case ended(user: String, reason: String)
    /// The safety-code exchange failed (a mismatch, a timeout, the peer gave up); no code was shown.
    case aborted(user: String, reason: String, code: String)
    /// `verify USER`.
    case verify(user: String, safetyCode: String, fingerprint: String)
    /// Something went wrong; `code` is a short machine word.
    case failure(code: String, message: String)

    public var human: [String] {
        switch self {
        case .request(let from): ["\(from) would like to private message, enter y or n:"]
        case .askAgain(let from): ["Please enter y or n (private messaging with \(from)):"]
        case .accepted(let user): ["\(user) accepts private messaging"]
        case .declined(let user): ["\(user) declines private messaging"]
        case .started(let user, let code):
            [
                "Start private messaging with \(user)",
                "Safety code with \(user): \(code) (compare it with \(user) in person or by phone; 'verify \(user)' shows it again)",
            ]
        case .message(let from, let text): ["\(from)(private): \(text)"]
        case .sent: []
        case .stopped(let user): ["Private messaging with \(user) stopped"]
        case .ended(let user, let reason): ["Private messaging with \(user) ended: \(reason)"]
        case .aborted(let user, let reason, _): ["Private session with \(user) aborted: \(reason)"]
        case .verify(let user, let code, let fingerprint):
            ["Safety code with \(user): \(code)", "\(user)'s key fingerprint: \(fingerprint)"]
        case .failure(_, let message): [message]
        }
    }

    public var json: JSONValue {
        func object(_ event: String, _ fields: [String: String]) -> JSONValue {
            var o = fields.mapValues(JSONValue.string)
            o["event"] = .string(event)
            return .object(o)
        }
        return switch self {
        case .request(let from): object("privaterequest", ["from": from])
        case .askAgain(let from): object("privaterequest", ["from": from, "message": "enter y or n"])
        case .accepted(let user): object("privateaccepted", ["user": user])
        case .declined(let user): object("privatedeclined", ["user": user])
        case .started(let user, let code): object("privatestarted", ["user": user, "safety_code": code])
        case .message(let from, let text): object("private", ["from": from, "text": text])
        case .sent(let to): .object(["event": .string("reply"), "command": .string("private"), "ok": .bool(true), "to": .string(to)])
        case .stopped(let user): object("privatestopped", ["user": user, "reason": "stopped"])
        case .ended(let user, let reason): object("privatestopped", ["user": user, "reason": reason])
        case .aborted(let user, let reason, let code): object("privateaborted", ["user": user, "reason": reason, "code": code])
        case .verify(let user, let code, let fingerprint):
            object("verify", ["user": user, "safety_code": code, "fingerprint": fingerprint])
        case .failure(let code, let message): object("error", ["code": code, "message": message])
        }
    }
}
