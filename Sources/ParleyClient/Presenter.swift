import ParleyProtocol

/// Something the client shows: a server event, a reply to a command, a login outcome, or local output.
public enum Output: Sendable, Hashable {
    /// An unsolicited server message.
    case event(ServerMessage)
    /// The server's reply to a typed command.
    case reply(Reply, command: UserCommand)
    /// The answer to our login.
    case login(LoginResult)
    /// Produced by the client itself.
    case local(LocalOutput)
}

/// How output is written: human sentences, or one JSON object per line.
public enum OutputFormat: Sendable, Hashable {
    case human, json
}

/// Pure formatting of client output. Human wording follows the original exercise exactly.
public enum Presenter {
    public static let welcome = "Welcome to the greatest messaging application ever!"
    public static let inactivity = "You have been logged out due to inactivity."
    public static let someUnreachable = "Your message could not be delivered to some recipients"

    /// The lines to print for `output` in `format` (possibly none).
    public static func render(_ output: Output, format: OutputFormat) -> [String] {
        switch format {
        case .human: human(output)
        case .json: [JSONPresenter.line(JSONPresenter.object(for: output))]
        }
    }

    /// Human lines for one output, safe to print: every line goes through `TerminalText` here, the
    /// one place human output is made, because nearly every line carries text from the network.
    public static func human(_ output: Output) -> [String] {
        let lines: [String] = switch output {
        case .event(let message): human(event: message)
        case .reply(let reply, let command): human(reply: reply, command: command)
        case .login(let result): human(login: result)
        case .local(let local): human(local: local)
        }
        return lines.flatMap { TerminalText($0).lines }
    }

    static func human(event: ServerMessage) -> [String] {
        switch event {
        case .hello: []
        case .message(let from, let text, _, _), .broadcast(let from, let text): ["\(from): \(text)"]
        case .presence(let user, let online): ["\(user) logged \(online ? "in" : "out")"]
        case .loggedOut(let reason): human(loggedOut: reason)
        case .error(let code, let message): [message.isEmpty ? code.defaultMessage : message]
        case .reply(let reply):
            // A reply we did not ask for (no id, e.g. a bad frame): only errors are worth showing.
            if case .error(let code, let message) = reply.outcome { [message.isEmpty ? code.defaultMessage : message] } else { [] }
        case .privateRequest(let from):
            PrivateNotice.request(from: from).human
        case .privateAccepted, .privateDeclined, .privateStarted, .privateStopped: []
        }
    }

    static func human(loggedOut reason: LogoutReason) -> [String] {
        switch reason {
        case .timeout: [inactivity]
        case .logout: []
        case .serverShutdown: ["The server is shutting down. You have been logged out."]
        case .slowConsumer: ["You have been logged out because messages could not be delivered to you fast enough."]
        case .kicked: ["You have been logged out by the server operator."]
        case .disabled: ["Your account has been disabled by the server operator. You have been logged out."]
        case .accountLocked: ["Your account has been blocked after too many wrong passwords. You have been logged out."]
        case .flooding: ["You have been logged out for sending too many commands too fast."]
        }
    }

    static func human(reply: Reply, command: UserCommand) -> [String] {
        switch reply.outcome {
        case .ok(let payload):
            switch (command, payload) {
            case (_, .users(let users)): return users
            case (.broadcast, .broadcast(unreachable: true)): return [someUnreachable]
            case (.block(let user), _): return ["\(user) is blocked"]
            case (.unblock(let user), _): return ["\(user) is unblocked"]
            case (.passwd, _): return ["Your password has been changed"]
            default: return []
            }
        case .error(let code, let message):
            if code == .notBlocked, case .unblock(let user) = command { return ["Error. \(user) was not blocked"] }
            if code == .wrongPassword, case .passwd = command { return ["Invalid Password. Your password was not changed"] }
            return [errorText(code: code, serverMessage: message)]
        }
    }

    static func human(login: LoginResult) -> [String] {
        switch login {
        case .loggedIn(let username, true): ["Account created for \(username).", welcome]
        case .loggedIn: [welcome]
        case .refused(let code, let message): [errorText(code: code, serverMessage: message)]
        }
    }

    static func human(local: LocalOutput) -> [String] {
        switch local {
        case .help: UserCommand.helpText.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        case .usage(let text), .invalidCommand(let text): [text]
        case .clientError(_, let message): [message]
        case .privateChat(let notice): notice.human
        case .connection(let notice): notice.human
        }
    }

    /// The fixed wording for codes the original exercise defined; the server's text for the rest.
    public static func errorText(code: ErrorCode, serverMessage: String) -> String {
        switch code {
        case .wrongPassword, .accountLockedNow, .accountLocked, .unknownUser, .recipientBlockedYou,
             .cannotBlockSelf:
            code.defaultMessage
        default:
            serverMessage.isEmpty ? code.defaultMessage : serverMessage
        }
    }
}
