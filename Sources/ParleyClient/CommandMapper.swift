import ParleyProtocol

/// Output the client produces by itself, without asking the server.
public enum LocalOutput: Sendable, Hashable {
    /// The `help` command: `UserCommand.helpText`.
    case help
    /// A known command with wrong arguments; carries the usage line.
    case usage(String)
    /// Not a command; carries the full message (with a suggestion when there is one).
    case invalidCommand(String)
    /// A problem on this side (lost connection, no reply in time); carries a short code and text.
    case clientError(code: String, message: String)
    /// Private-session output (see `PrivateNotice`).
    case privateChat(PrivateNotice)
    /// The server connection: lost, reconnecting, reconnected (see `ConnectionNotice`).
    case connection(ConnectionNotice)
}

/// What the client does with one typed line.
public enum InputAction: Sendable, Hashable {
    /// Blank line: nothing.
    case nothing
    /// Show something locally.
    case local(LocalOutput)
    /// Send `request` to the server; `command` is kept so its reply can be worded.
    case send(Request, command: UserCommand)
    /// A private-session command, decided by `ClientStateMachine` (direct connection, not the server).
    case privateCommand(UserCommand)
    /// `passwd`: read the old and new passwords without echo, then send them.
    case changePassword
}

/// Turns typed lines into actions.
public enum CommandMapper {
    /// Maps one input line (human command syntax) to what the client should do.
    public static func action(for line: String) -> InputAction {
        switch UserCommand.parse(line) {
        case .failure(.empty): return .nothing
        case .failure(.usage(let usage)): return .local(.usage(usage))
        case .failure(let error): return .local(.invalidCommand(error.message))
        case .success(let command): return action(for: command)
        }
    }

    /// Maps a parsed command to what the client should do.
    public static func action(for command: UserCommand) -> InputAction {
        switch command {
        case .message(let to, let text): .send(.message(to: to, text: text), command: command)
        case .broadcast(let text): .send(.broadcast(text: text), command: command)
        case .whoelse: .send(.whoelse, command: command)
        case .whoelsesince(let seconds): .send(.whoelsesince(seconds: seconds), command: command)
        case .block(let user): .send(.block(user: user), command: command)
        case .unblock(let user): .send(.unblock(user: user), command: command)
        case .logout: .send(.logout, command: command)
        case .passwd: .changePassword
        case .help: .local(.help)
        case .startPrivate, .privateMessage, .stopPrivate, .verify: .privateCommand(command)
        }
    }
}
