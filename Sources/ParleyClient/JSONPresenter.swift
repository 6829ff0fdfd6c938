import ParleyProtocol

/// JSON output: one object per line, keys sorted, with an `event` member naming the kind.
/// The schema is documented in docs/CLIENT.md.
public enum JSONPresenter {
    /// Serialises `value` as one line (no trailing newline). Besides what JSON requires, DEL, C1
    /// controls, U+2028/U+2029 and bidi and invisible formatting characters are `\u` escapes, so
    /// the line is as inert on a terminal as human output; decoded, the strings are the originals.
    public static func line(_ value: JSONValue) -> String {
        var bytes: [UInt8] = []
        bytes.writeJSON(value)
        let json = String(decoding: bytes, as: UTF8.self)
        guard json.unicodeScalars.contains(where: TerminalText.mustEscapeInJSON) else { return json }
        // Outside strings JSON is ASCII without DEL, so each such scalar is inside a string, where a
        // `\u` escape means the same scalar (all of them are in the BMP: one escape each).
        var escaped = ""
        for scalar in json.unicodeScalars {
            if TerminalText.mustEscapeInJSON(scalar) {
                let hex = String(scalar.value, radix: 16)
                escaped += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    /// The JSON object for one output.
    public static func object(for output: Output) -> JSONValue {
        switch output {
        case .event(let message): object(event: message)
        case .reply(let reply, let command): object(reply: reply, command: command.name, extra: fields(of: command))
        case .login(let result): object(login: result)
        case .local(let local): object(local: local)
        }
    }

    static func object(event: ServerMessage) -> JSONValue {
        var o: [String: JSONValue] = [:]
        switch event {
        case .hello(let version, let server):
            o = ["event": .string("hello"), "version": .integer(version), "server": .string(server)]
        case .reply(let reply):
            return object(reply: reply, command: nil, extra: [:])
        case .message(let from, let text, let delivery, let sent):
            o = ["event": .string("message"), "from": .string(from), "text": .string(text)]
            if let delivery { o["delivery"] = .integer(delivery) }
            if let sent { o["sent"] = .integer(sent) }
        case .broadcast(let from, let text):
            o = ["event": .string("broadcast"), "from": .string(from), "text": .string(text)]
        case .presence(let user, let online):
            o = ["event": .string("presence"), "user": .string(user), "online": .bool(online)]
        case .loggedOut(let reason):
            o = ["event": .string("loggedout"), "reason": .string(reason.rawValue)]
            if let text = Presenter.human(loggedOut: reason).first { o["message"] = .string(text) }
        case .privateRequest(let from):
            o = ["event": .string("privaterequest"), "from": .string(from)]
        case .privateAccepted(let user, let host, let port, let fingerprint, let linkID):
            o = ["event": .string("privateaccepted"), "user": .string(user), "host": .string(host),
                 "port": .integer(Int64(port)), "fingerprint": .string(fingerprint), "session": .string(linkID)]
        case .privateDeclined(let user):
            o = ["event": .string("privatedeclined"), "user": .string(user)]
        case .privateStarted(let user, let fingerprint, let linkID):
            o = ["event": .string("privatestarted"), "user": .string(user), "fingerprint": .string(fingerprint),
                 "session": .string(linkID)]
        case .privateStopped(let user, let reason):
            o = ["event": .string("privatestopped"), "user": .string(user), "reason": .string(reason)]
        case .error(let code, let message):
            o = ["event": .string("error"), "code": .string(code.rawValue), "message": .string(message)]
        }
        return .object(o)
    }

    static func object(reply: Reply, command: String?, extra: [String: JSONValue]) -> JSONValue {
        var o = extra
        o["event"] = .string("reply")
        if let command { o["command"] = .string(command) }
        switch reply.outcome {
        case .ok(let payload):
            o["ok"] = .bool(true)
            switch payload {
            case .none: break
            case .users(let users): o["users"] = .array(users.map(JSONValue.string))
            case .login(let username, let created):
                o["username"] = .string(username)
                o["created"] = .bool(created)
            case .broadcast(let unreachable): o["unreachable"] = .bool(unreachable)
            }
        case .error(let code, let message):
            o["ok"] = .bool(false)
            o["code"] = .string(code.rawValue)
            o["message"] = .string(message)
        }
        return .object(o)
    }

    static func object(login: LoginResult) -> JSONValue {
        switch login {
        case .loggedIn(let username, let created):
            .object(["event": .string("reply"), "command": .string("login"), "ok": .bool(true),
                     "username": .string(username), "created": .bool(created)])
        case .refused(let code, let message):
            .object(["event": .string("reply"), "command": .string("login"), "ok": .bool(false),
                     "code": .string(code.rawValue), "message": .string(Presenter.errorText(code: code, serverMessage: message))])
        }
    }

    static func object(local: LocalOutput) -> JSONValue {
        switch local {
        case .help:
            .object(["event": .string("help"), "commands": .array(UserCommand.allNames.map(JSONValue.string)),
                     "text": .string(UserCommand.helpText)])
        case .usage(let usage): .object(["event": .string("error"), "code": .string("usage"), "message": .string(usage)])
        case .invalidCommand(let message): .object(["event": .string("error"), "code": .string("invalid_command"), "message": .string(message)])
        case .clientError(let code, let message): .object(["event": .string("error"), "code": .string(code), "message": .string(message)])
        case .privateChat(let notice): notice.json
        case .connection(let notice): notice.json
        }
    }

    // The command's own arguments, so a script can tell which reply is which without tracking order.
    static func fields(of command: UserCommand) -> [String: JSONValue] {
        switch command {
        case .message(let to, _): ["to": .string(to)]
        case .block(let user), .unblock(let user): ["user": .string(user)]
        case .whoelsesince(let seconds): ["seconds": .integer(seconds)]
        default: [:]
        }
    }
}
