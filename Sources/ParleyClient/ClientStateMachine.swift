import Foundation
import ParleyProtocol
import ParleyProtocolNIO

/// The client's decisions, as a value: events in, actions out, no I/O (so it is tested without
/// sockets). Requests carry ids and may be in flight together; output follows the wire: frames
/// are shown as they arrive, and what a typed line produces by itself waits behind the replies
/// of commands typed before it.
public struct ClientStateMachine: Sendable {
    /// Timings; the defaults are the ones the `parley` binary uses.
    public struct Configuration: Sendable {
        public var replyTimeout: Duration = .seconds(10)
        /// How long an accepted private request keeps its port open for the peer.
        public var listenTimeout: Duration = .seconds(30)
        /// Reconnecting after a lost connection; nil never reconnects (the session just ends).
        public var reconnect: ReconnectPolicy? = nil
        /// `passwd` asks for the new password twice (on a terminal, where it is typed unseen).
        public var confirmNewPassword = false
        public init() {}
    }

    enum Phase: Equatable {
        case askingUsername
        case askingPassword(username: String)
        case loggingIn(username: String, password: String, id: Int64)
        case online
        /// The connection was lost without a logout: reconnecting (see `+Reconnect`).
        case offline(Offline)
        /// `logout` went out as `id`; frames before its reply are still shown (and acked).
        case loggingOut(id: Int64)
        /// The reply came: waiting (bounded) for the server to close.
        case loggedOut
        case finished
    }

    /// Why a request was sent, so its reply can be worded (or kept quiet).
    enum Purpose: Equatable {
        case login(username: String)
        /// The login again on a new connection; `alternative`: with the password of a `passwd` in doubt.
        case relogin(alternative: Bool)
        case command(UserCommand)
        /// `passwd`; on success `new` is the password kept for reconnecting.
        case passwd(new: String)
        case logout
        case startPrivate(key: String, attempt: PrivateAttempt)
        case acceptPrivate(key: String, attempt: PrivateAttempt)
        /// Keeps the server's view in step; the reply changes nothing.
        case quiet
    }

    let configuration: Configuration
    let presetUsername: String?
    var phase = Phase.askingUsername
    var nextID: Int64 = 1
    var pending: [Int64: Purpose] = [:]
    /// Requests from typed lines whose reply is not shown yet, oldest first.
    var barriers: [Int64] = []
    /// Output of typed lines waiting for the reply of the barrier it was typed after.
    var held: [Int64: [Output]] = [:]
    var users = OnlineUsers()
    /// How the server last said it logs us out (`loggedout`), for the exit status.
    var ending: LogoutReason?
    var privates = PrivatePeers()
    /// What a reconnect logs in with: kept in memory only, and only when reconnecting is on.
    var credentials: Credentials?
    /// Which listed server the session is on (or trying).
    var serverIndex = 0
    /// A `passwd` being typed: the next lines are its passwords, not commands.
    var passwordEntry: PasswordEntry?

    public init(username: String? = nil, configuration: Configuration = Configuration()) {
        self.presetUsername = username
        self.configuration = configuration
        self.serverIndex = configuration.reconnect?.current ?? 0
    }

    /// What to do first.
    public mutating func start() -> [ClientAction] {
        if let name = presetUsername {
            phase = .askingPassword(username: name)
            return [.readLine(prompt: "Password: ", secret: true)]
        }
        return [.readLine(prompt: "Username: ", secret: false)]
    }

    /// Whether the session is over (the loop stops feeding events).
    public var isFinished: Bool { phase == .finished }

    /// Decides what `event` leads to.
    public mutating func handle(_ event: ClientEvent) -> [ClientAction] {
        var out = Actions()
        switch event {
        case .line(let line): typed(line, &out)
        case .inputEnded: inputEnded(&out)
        case .frame(let frame): received(frame, &out)
        case .connectionClosed(let error): closed(error, &out)
        case .serverConnected: serverConnected(&out)
        case .serverConnectFailed(let error): serverConnectFailed(error, &out)
        case .timerFired(let timer): fired(timer, &out)
        case .privateLink(let activity): privateActivity(activity, &out)
        }
        return out.list
    }

    // MARK: lines

    private mutating func typed(_ line: String, _ out: inout Actions) {
        switch phase {
        case .askingUsername:
            let name = line.trimmingCharacters(in: .whitespaces)
            if name.isEmpty { return out.append(.readLine(prompt: "Username: ", secret: false)) }
            phase = .askingPassword(username: name)
            out.append(.readLine(prompt: "Password: ", secret: true))
        case .askingPassword(let name):
            let id = request(.login(username: name, password: line), .login(username: name), &out)
            phase = .loggingIn(username: name, password: line, id: id)
        case .online, .offline:
            if passwordEntry != nil {
                passwordTyped(line, &out)
            } else {
                command(line, &out)
            }
            if isSessionPhase { out.append(nextRead) }
        case .loggingIn, .loggingOut, .loggedOut, .finished:
            return  // no read is asked for in these phases
        }
    }

    private mutating func command(_ line: String, _ out: inout Actions) {
        // A prompt waits for y or n; any other line is a command, and the prompt is recalled after it.
        if let reminder = privates.promptReminder {
            if answer(line, &out) { return }
            run(line, &out)
            return inOrder(.local(.privateChat(reminder)), &out)
        }
        run(line, &out)
    }

    private mutating func run(_ line: String, _ out: inout Actions) {
        switch CommandMapper.action(for: line) {
        case .nothing: return
        case .local(let local): inOrder(.local(local), &out)
        case .privateCommand(let command): runPrivate(command, &out)
        case .changePassword: startPasswordEntry(&out)
        case .send(.logout, _) where !isOnline: leaveWhileOffline(&out)
        case .send(.logout, _): logOut(&out)
        case .send(_, let command) where !isOnline: inOrder(.local(.connection(.notConnected(command: command.name))), &out)
        case .send(let wire, let command):
            let id = request(wire, .command(command), &out)
            barriers.append(id)
        }
    }

    private mutating func inputEnded(_ out: inout Actions) {
        switch phase {
        case .askingUsername, .askingPassword:
            finish(.badCredentials, &out)
        case .online:
            passwordEntry = nil
            // Already logged out by the server (it closes next): that is how the session ended.
            if let ending, ending != .logout, !willReconnect(after: ending) {
                closeAllPrivate(reason: "logged out", &out)
                return finish(Self.exitStatus(after: ending), &out)
            }
            logOut(&out)
        case .offline:
            leaveWhileOffline(&out)
        case .loggingIn, .loggingOut, .loggedOut, .finished:
            return
        }
    }

    /// Logging out drains explicitly: everything received so far was shown and acked before this
    /// runs (one ordered loop), and stored messages the server sent before reading `logout` all
    /// precede its reply, so they are shown and acked as they arrive until that reply comes.
    private mutating func logOut(_ out: inout Actions) {
        closeAllPrivate(reason: "logged out", &out)
        let id = request(.logout, .logout, &out)
        phase = .loggingOut(id: id)
    }

    // MARK: frames

    private mutating func received(_ frame: ServerMessage, _ out: inout Actions) {
        if case .reply(let reply) = frame, let id = reply.id, let purpose = pending.removeValue(forKey: id) {
            out.append(.cancelTimer(.reply(id: id)))
            return replied(reply, id: id, purpose, &out)
        }
        // A reply that came after we gave up on it (its "no reply" error was shown).
        if case .reply(let reply) = frame, let id = reply.id, id > 0, id < nextID { return }
        if case .finished = phase { return }
        let before = users
        users.apply(frame)
        if users != before { out.append(.usersChanged(users.names)) }
        if privateEvent(frame, &out) { return }
        if case .loggedOut(let reason) = frame {
            // A shutdown with other servers listed is reconnected from: the links stay.
            if reason != .logout, !willReconnect(after: reason) {
                let why = switch reason {
                case .timeout: "timed out"
                case .accountLocked: "logged out"
                default: "lost the connection to the server"
                }
                closeAllPrivate(reason: why, &out)
            }
            ending = reason
        }
        out.append(.show(.event(frame)))
        if case .message(_, _, let delivery?, _) = frame {
            // Only now is it shown; the ack lets the server forget it (exactly-once delivery).
            out.append(.send(.ack(delivery: delivery), id: nil))
        }
    }

    private mutating func replied(_ reply: Reply, id: Int64, _ purpose: Purpose, _ out: inout Actions) {
        switch purpose {
        case .login(let name): loggedIn(reply, name: name, &out)
        case .relogin(let alternative): loggedInAgain(reply, alternative: alternative, &out)
        case .passwd(let new): passwordReplied(reply, new: new, &out)
        case .command(let command):
            let before = users
            users.apply(reply: reply, command: command)
            if users != before { out.append(.usersChanged(users.names)) }
            out.append(.show(.reply(reply, command: command)))
            if case .block(let user) = command, case .ok = reply.outcome { endPrivate(with: user, reason: "blocked", &out) }
        case .logout:
            out.append(.show(.reply(reply, command: .logout)))
            // The server closes once every stored message it sent is acked; we wait, bounded.
            phase = .loggedOut
            out.append(.armTimer(.logoutClose, after: configuration.replyTimeout))
        case .startPrivate(let key, let attempt):
            startReplied(reply, key: key, attempt: attempt, &out)
        case .acceptPrivate(let key, let attempt):
            acceptReplied(reply, key: key, attempt: attempt, &out)
        case .quiet:
            break
        }
        release(id, &out)
    }

    private mutating func loggedIn(_ reply: Reply, name: String, _ out: inout Actions) {
        let result: LoginResult
        switch reply.outcome {
        case .ok(.login(let registered, let created)): result = .loggedIn(username: registered, created: created)
        case .ok: result = .loggedIn(username: name, created: false)
        case .error(let code, let message): result = .refused(code: code, message: message)
        }
        out.append(.show(.login(result)))
        switch result {
        case .loggedIn(let registered, _):
            privates.me = registered
            if configuration.reconnect != nil, case .loggingIn(_, let password, _) = phase {
                credentials = Credentials(username: name, password: password)
            }
            phase = .online
            out.append(.readLine(prompt: "> ", secret: false))
        case .refused(let code, _):
            switch code {
            case .wrongPassword, .invalidPasswordFormat:  // same username, ask the password again
                phase = .askingPassword(username: name)
                out.append(.readLine(prompt: "Password: ", secret: true))
            case .accountLocked, .accountLockedNow: finish(.accountLocked, &out)
            case .accountDisabled: finish(.badCredentials, &out)
            case .alreadyOnline: finish(.alreadyOnline, &out)
            case .invalidUsername, .registrationClosed:
                // A name given on the command line cannot be re-asked; a typed one can.
                guard presetUsername == nil else { return finish(.badCredentials, &out) }
                phase = .askingUsername
                out.append(.readLine(prompt: "Username: ", secret: false))
            default: finish(.otherError, &out)
            }
        }
    }

    // MARK: timers and the end

    private mutating func fired(_ timer: ClientTimer, _ out: inout Actions) {
        switch timer {
        case .reply(let id):
            guard let purpose = pending.removeValue(forKey: id) else { return }
            timedOut(id, purpose, &out)
        case .listen(let attempt):
            listenTimedOut(attempt, &out)
        case .logoutClose:
            if phase == .loggedOut { finish(.ok, &out) }
        case .reconnect:
            reconnectTimerFired(&out)
        }
    }

    private mutating func timedOut(_ id: Int64, _ purpose: Purpose, _ out: inout Actions) {
        let noReply = LocalOutput.clientError(code: "no_reply", message: "Error. The server did not answer in time")
        switch purpose {
        case .login:
            // As before: a login that gets no answer ends the session as a lost connection.
            out.append(.show(.local(.clientError(code: "connection_lost", message: "Error. \(ClientError.timedOut.description)"))))
            return finish(.connectionLost, &out)
        case .logout:
            return finish(.ok, &out)  // never hang on a server that does not answer
        case .relogin:
            return attemptFailed("the server did not answer the login", dropping: true, &out)
        case .command, .passwd:
            out.append(.show(.local(noReply)))
        case .startPrivate(let key, let attempt):
            if privates.forget(key, ifRequesting: attempt) { out.append(.closePrivate(attempt, reason: nil)) }
            out.append(.show(.local(.privateChat(.failure(code: "no_reply", message: "Error. The server did not answer in time")))))
        case .acceptPrivate(let key, let attempt):
            if privates.forget(key, ifListening: attempt) { out.append(.closePrivate(attempt, reason: nil)) }
        case .quiet:
            break
        }
        release(id, &out)
    }

    private mutating func closed(_ error: ClientError?, _ out: inout Actions) {
        switch phase {
        case .finished: return
        case .askingUsername, .askingPassword, .loggingIn:
            showFailure(error ?? .connectionClosed, &out)
        case .loggingOut, .loggedOut:
            finish(.ok, &out)
        case .online:
            if willReconnect(after: ending) { return connectionLost(&out) }
            guard let ending else { return showFailure(error ?? .connectionClosed, &out) }
            finish(Self.exitStatus(after: ending), &out)
        case .offline(let offline):
            // Only the connection of the attempt under way reports here (the loop drops the rest).
            guard case .loggingIn = offline.step else { return }
            attemptFailed((error ?? .connectionClosed).description, dropping: false, &out)
        }
    }

    /// The exit status of a session the server ended with `loggedout(reason)`.
    static func exitStatus(after reason: LogoutReason) -> ExitStatus {
        switch reason {
        case .timeout: .timedOut
        case .logout: .ok
        case .accountLocked: .accountLocked
        case .serverShutdown, .slowConsumer, .kicked, .disabled, .flooding: .connectionLost
        }
    }

    private mutating func showFailure(_ error: ClientError, _ out: inout Actions) {
        let status = ChatClient.exitStatus(for: error)
        let code = status == .connectionLost ? "connection_lost" : "client_error"
        out.append(.show(.local(.clientError(code: code, message: "Error. \(error.description)"))))
        finish(status, &out)
    }

    mutating func finish(_ status: ExitStatus, _ out: inout Actions) {
        guard phase != .finished else { return }
        phase = .finished
        // What waits behind unanswered commands is still shown: it was typed, and it is local.
        for id in barriers { for output in held.removeValue(forKey: id) ?? [] { out.append(.show(output)) } }
        barriers = []
        for id in pending.keys.sorted() { out.append(.cancelTimer(.reply(id: id))) }
        pending = [:]
        out.append(.cancelTimer(.logoutClose))
        out.append(.cancelTimer(.reconnect))
        out.append(.close)
        out.append(.exit(status))
    }

    // MARK: requests and ordering

    /// Sends `request` with a fresh id and a deadline for its reply.
    mutating func request(_ request: Request, _ purpose: Purpose, _ out: inout Actions) -> Int64 {
        // No server to keep in step while reconnecting (the new one starts from nothing).
        if purpose == .quiet, !isOnline { return 0 }
        let id = nextRequestID()
        pending[id] = purpose
        out.append(.send(request, id: id))
        out.append(.armTimer(.reply(id: id), after: configuration.replyTimeout))
        return id
    }

    mutating func nextRequestID() -> Int64 {
        defer { nextID += 1 }
        return nextID
    }

    /// Output of a typed line: now, or after the replies of commands typed before it.
    mutating func inOrder(_ output: Output, _ out: inout Actions) {
        guard let last = barriers.last else { return out.append(.show(output)) }
        held[last, default: []].append(output)
    }

    /// The reply to `id` is shown (or given up on): what was typed after it may follow.
    mutating func release(_ id: Int64, _ out: inout Actions) {
        guard let index = barriers.firstIndex(of: id) else { return }
        barriers.remove(at: index)
        let waiting = held.removeValue(forKey: id) ?? []
        if index > 0 {
            // An earlier command is still unanswered: its turn comes first.
            held[barriers[index - 1], default: []].append(contentsOf: waiting)
        } else {
            for output in waiting { out.append(.show(output)) }
        }
    }
}

/// Actions collected while one event is handled.
struct Actions {
    private(set) var list: [ClientAction] = []
    mutating func append(_ action: ClientAction) { list.append(action) }
}
