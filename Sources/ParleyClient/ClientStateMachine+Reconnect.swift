import ParleyProtocol

/// Where a reconnect stands: which attempt, and what it waits for.
struct Offline: Equatable {
    enum Step: Equatable {
        /// The back-off timer runs.
        case waiting
        /// `.connectServer` is under way.
        case connecting
        /// Connected; the login `id` is in flight.
        case loggingIn(id: Int64)
    }

    var attempt: Int
    var step: Step
}

/// The name and password a reconnect logs in with, in memory only.
struct Credentials: Equatable {
    var username: String
    var password: String
    /// The new password of a `passwd` whose answer was lost with the connection: tried once if
    /// the kept one is refused, since the server may have applied the change.
    var alternative: String?
}

/// How far a `passwd` has been typed.
enum PasswordEntry: Equatable {
    case old
    case new(old: String)
    case confirm(old: String, new: String)
}

extension ClientStateMachine {
    var isOnline: Bool { phase == .online }

    /// Logged in, or reconnecting after having been: typed lines are commands.
    var isSessionPhase: Bool {
        switch phase {
        case .online, .offline: true
        default: false
        }
    }

    /// The read to ask for after a line in a session: a password of `passwd`, or a command.
    var nextRead: ClientAction {
        switch passwordEntry {
        case .old?: .readLine(prompt: "Old password: ", secret: true)
        case .new?: .readLine(prompt: "New password: ", secret: true)
        case .confirm?: .readLine(prompt: "Retype new password: ", secret: true)
        case nil: .readLine(prompt: "> ", secret: false)
        }
    }

    /// Whether losing the connection after `ending` (the server's last `loggedout`, if any) is
    /// reconnected from. A logout, a timeout, a kick or a lockout never is; a shutdown is when
    /// other servers are listed (one node going away), not when it is the only one.
    func willReconnect(after ending: LogoutReason?) -> Bool {
        guard let policy = configuration.reconnect, policy.maxAttempts > 0, credentials != nil else { return false }
        switch ending {
        case nil: return true
        case .serverShutdown?: return policy.servers.count > 1
        case .timeout?, .logout?, .slowConsumer?, .accountLocked?, .kicked?, .disabled?, .flooding?: return false
        }
    }

    // MARK: losing the connection

    /// The connection is gone without a logout: what was in flight fails, private sessions not
    /// yet open end (the server forgot them), open ones stay (the links are direct), and the
    /// first attempt is scheduled.
    mutating func connectionLost(_ out: inout Actions) {
        ending = nil
        failInFlight(&out)
        dropUnopenedPrivates(&out)
        schedule(attempt: 1, after: nil, &out)
    }

    private mutating func failInFlight(_ out: inout Actions) {
        for id in pending.keys.sorted() {
            guard let purpose = pending.removeValue(forKey: id) else { continue }
            out.append(.cancelTimer(.reply(id: id)))
            let lost: Output?
            switch purpose {
            case .command(let command):
                lost = .local(.connection(.requestLost(command: command.name)))
            case .passwd(let new):
                credentials?.alternative = new
                lost = .local(.connection(.requestLost(command: UserCommand.passwd.name)))
            case .startPrivate(let k, let attempt):
                if privates.forget(k, ifRequesting: attempt) { out.append(.closePrivate(attempt, reason: nil)) }
                lost = .local(.connection(.requestLost(command: "startprivate")))
            case .acceptPrivate(let k, let attempt):
                if privates.forget(k, ifListening: attempt) { out.append(.closePrivate(attempt, reason: nil)) }
                lost = nil
            case .login, .relogin, .logout, .quiet:
                lost = nil
            }
            // In its turn: after the replies (or losses) of what was typed before it.
            if let lost { held[id, default: []].insert(lost, at: 0) }
            release(id, &out)
        }
    }

    private mutating func dropUnopenedPrivates(_ out: inout Actions) {
        for k in privates.peers.keys.sorted() {
            guard let peer = privates.peers[k] else { continue }
            if case .open = peer.phase { continue }
            privates.peers[k] = nil
            close(peer.phase, reason: nil, &out)
            out.append(.show(.local(.privateChat(.ended(user: peer.displayName, reason: "connection to the server lost")))))
        }
        privates.prompts = []
    }

    // MARK: attempts

    private mutating func schedule(attempt: Int, after why: String?, _ out: inout Actions) {
        guard let policy = configuration.reconnect else { return }
        serverIndex = (serverIndex + 1) % policy.servers.count
        let delay = policy.jitter(policy.backoff(before: attempt))
        phase = .offline(Offline(attempt: attempt, step: .waiting))
        out.append(.show(.local(.connection(.reconnecting(to: policy.servers[serverIndex], attempt: attempt, delay: delay, after: why)))))
        out.append(.armTimer(.reconnect, after: delay))
    }

    mutating func reconnectTimerFired(_ out: inout Actions) {
        guard case .offline(var offline) = phase, offline.step == .waiting, let policy = configuration.reconnect else { return }
        offline.step = .connecting
        phase = .offline(offline)
        out.append(.connectServer(policy.servers[serverIndex]))
    }

    mutating func serverConnected(_ out: inout Actions) {
        guard case .offline(var offline) = phase, offline.step == .connecting, let credentials else {
            return out.append(.dropServer)
        }
        let login = Request.login(username: credentials.username, password: credentials.password)
        offline.step = .loggingIn(id: request(login, .relogin(alternative: false), &out))
        phase = .offline(offline)
    }

    mutating func serverConnectFailed(_ error: ClientError, _ out: inout Actions) {
        guard case .offline(let offline) = phase, offline.step == .connecting else { return }
        if error.isCertificateFailure {
            // Fail closed: a server that is not who it claims is not tried again.
            return endReconnecting(.certificateFailed, message: "Error. \(error.description)", code: "certificate_verification_failed", &out)
        }
        attemptFailed(error.description, dropping: false, &out)
    }

    /// The attempt under way failed for `why`: the next one, or the end after the last.
    mutating func attemptFailed(_ why: String, dropping: Bool, _ out: inout Actions) {
        guard case .offline(let offline) = phase, let policy = configuration.reconnect else { return }
        if dropping { out.append(.dropServer) }
        guard offline.attempt < policy.maxAttempts else {
            closeAllPrivate(reason: "lost the connection to the server", &out)
            out.append(.show(.local(.connection(.gaveUp(attempts: offline.attempt)))))
            return finish(.connectionLost, &out)
        }
        schedule(attempt: offline.attempt + 1, after: why, &out)
    }

    mutating func loggedInAgain(_ reply: Reply, alternative: Bool, _ out: inout Actions) {
        guard case .offline(var offline) = phase, let policy = configuration.reconnect, var credentials else { return }
        switch reply.outcome {
        case .ok(let payload):
            if alternative, let new = credentials.alternative { credentials.password = new }
            credentials.alternative = nil
            self.credentials = credentials
            if case .login(let registered, _) = payload { privates.me = registered }
            phase = .online
            out.append(.show(.local(.connection(.reconnected(to: policy.servers[serverIndex], username: privates.me)))))
        case .error(.wrongPassword, _) where !alternative && credentials.alternative != nil:
            let login = Request.login(username: credentials.username, password: credentials.alternative!)
            offline.step = .loggingIn(id: request(login, .relogin(alternative: true), &out))
            phase = .offline(offline)
        case .error(let code, let message):
            let text = "Error. Could not log in again as \(credentials.username): \(Presenter.errorText(code: code, serverMessage: message))"
            switch code {
            // The password changed elsewhere, or the name is locked: never tried again.
            case .wrongPassword, .invalidPasswordFormat, .invalidUsername:
                endReconnecting(.badCredentials, message: text, code: code.rawValue, &out)
            case .accountLocked, .accountLockedNow:
                endReconnecting(.accountLocked, message: text, code: code.rawValue, &out)
            default:
                // Passing (the old session not yet noticed gone, busy, registration closed on
                // this node): the next attempt, maybe on another server.
                attemptFailed(Presenter.errorText(code: code, serverMessage: message), dropping: true, &out)
            }
        }
    }

    private mutating func endReconnecting(_ status: ExitStatus, message: String, code: String, _ out: inout Actions) {
        closeAllPrivate(reason: "lost the connection to the server", &out)
        out.append(.show(.local(.clientError(code: code, message: message))))
        finish(status, &out)
    }

    /// `logout` or end of input while reconnecting: there is no server session left to end.
    mutating func leaveWhileOffline(_ out: inout Actions) {
        passwordEntry = nil
        closeAllPrivate(reason: "logged out", &out)
        finish(.ok, &out)
    }

    // MARK: passwd

    mutating func startPasswordEntry(_ out: inout Actions) {
        guard isOnline else { return inOrder(.local(.connection(.notConnected(command: UserCommand.passwd.name))), &out) }
        passwordEntry = .old
    }

    /// One password of a `passwd` was typed; the request leaves once all of them are in.
    mutating func passwordTyped(_ line: String, _ out: inout Actions) {
        switch passwordEntry {
        case .old?:
            passwordEntry = .new(old: line)
        case .new(let old)? where configuration.confirmNewPassword:
            passwordEntry = .confirm(old: old, new: line)
        case .new(let old)?:
            passwordEntry = nil
            sendPasswordChange(old: old, new: line, &out)
        case .confirm(let old, let new)?:
            passwordEntry = nil
            guard line == new else {
                let mismatch = LocalOutput.clientError(code: "password_mismatch", message: "Error. The new passwords did not match; your password was not changed")
                return inOrder(.local(mismatch), &out)
            }
            sendPasswordChange(old: old, new: new, &out)
        case nil:
            return
        }
    }

    private mutating func sendPasswordChange(old: String, new: String, _ out: inout Actions) {
        guard isOnline else { return inOrder(.local(.connection(.notConnected(command: UserCommand.passwd.name))), &out) }
        let id = request(.passwd(old: old, new: new), .passwd(new: new), &out)
        barriers.append(id)
    }

    mutating func passwordReplied(_ reply: Reply, new: String, _ out: inout Actions) {
        // From now on a reconnect logs in with the new password.
        if case .ok = reply.outcome { credentials?.password = new }
        out.append(.show(.reply(reply, command: .passwd)))
    }
}
