import Foundation
import ParleyProtocol

/// Where a session reads what the person (or script) types.
public protocol LineSource: Sendable {
    /// True when a person is typing: prompts are shown and mistakes are asked again.
    var isInteractive: Bool { get }
    /// The next line without its terminator, or nil at end of input.
    func readLine(prompt: String) async -> String?
    /// Like `readLine`, but not echoed (passwords).
    func readSecret(prompt: String) async -> String?
}

/// Where a session writes its output; implementations must be safe to call from any task.
public protocol OutputSink: Sendable {
    /// Writes complete lines (each gets its own newline).
    func emit(_ lines: [String])
}

/// Drives one chat session over a connected `ChatConnection`: login (with retries), then commands
/// from `input` and events from the server, until logout, end of input, or the server ends it.
public final class ClientSession: Sendable {
    private let connection: ChatConnection
    private let input: LineSource
    private let output: OutputSink
    private let format: OutputFormat
    private let presetUsername: String?
    private let replyTimeout: Duration
    private let state = SessionState()
    private let onlineUsersChanged: @Sendable (Set<String>) -> Void
    /// Private sessions (direct peer-to-peer connections); see `PrivateChat`.
    public let privateChat: PrivateChat

    /// - Parameters:
    ///   - username: use this name instead of asking for one.
    ///   - replyTimeout: how long to wait for each reply before reporting it missing.
    ///   - onlineUsersChanged: called with the new set whenever presence or `whoelse` changes it.
    public init(
        connection: ChatConnection, input: LineSource, output: OutputSink, format: OutputFormat,
        username: String? = nil, replyTimeout: Duration = .seconds(10),
        onlineUsersChanged: @escaping @Sendable (Set<String>) -> Void = { _ in }
    ) {
        self.connection = connection
        self.input = input
        self.output = output
        self.format = format
        self.presetUsername = username
        self.replyTimeout = replyTimeout
        self.onlineUsersChanged = onlineUsersChanged
        self.privateChat = PrivateChat(connection: connection, output: output, format: format)
    }

    /// Runs the whole session and returns the process exit status it ended with.
    public func run() async -> ExitStatus {
        if let failed = await logIn() { return failed }
        return await withCheckedContinuation { continuation in
            state.setFinisher(continuation)
            // Events and typed commands run side by side; whichever ends the session first wins.
            Task { if let status = await self.pumpEvents() { self.state.finish(status) } }
            Task { if let status = await self.readCommands() { self.state.finish(status) } }
        }
    }

    /// Maps a connection failure to the exit status the client reports.
    public static func exitStatus(for error: ClientError) -> ExitStatus {
        switch error {
        case .tls(.certificateVerificationFailed): .certificateFailed
        case .tls(.closedDuringHandshake), .tls(.uncleanShutdown), .connectFailed, .connectionClosed, .timedOut,
             .eventBufferOverflow:
            .connectionLost
        case .tls, .protocolViolation, .unsupportedVersion: .otherError
        }
    }

    private func show(_ item: Output) {
        let lines = Presenter.render(item, format: format)
        if !lines.isEmpty { output.emit(lines) }
    }

    private func showFailure(_ error: Error) -> ExitStatus {
        let clientError = error as? ClientError ?? .protocolViolation(String(describing: error))
        let status = Self.exitStatus(for: clientError)
        let code = status == .connectionLost ? "connection_lost" : "client_error"
        show(.local(.clientError(code: code, message: "Error. \(clientError.description)")))
        return status
    }

    /// Returns nil once logged in, otherwise the status to exit with.
    private func logIn() async -> ExitStatus? {
        var username = presetUsername
        while true {
            if username == nil {
                guard let line = await input.readLine(prompt: "Username: ") else { return .badCredentials }
                let name = line.trimmingCharacters(in: .whitespaces)
                if name.isEmpty { continue }
                username = name
            }
            guard let name = username, let password = await input.readSecret(prompt: "Password: ") else {
                return .badCredentials
            }
            let result: LoginResult
            do {
                result = try await connection.login(username: name, password: password, timeout: replyTimeout)
            } catch {
                return showFailure(error)
            }
            show(.login(result))
            if case .loggedIn(let registered, _) = result { await privateChat.loggedIn(as: registered) }
            guard case .refused(let code, _) = result else { return nil }
            switch code {
            case .wrongPassword, .invalidPasswordFormat: continue  // same username, ask the password again
            case .accountLocked, .accountLockedNow: return .accountLocked
            case .alreadyOnline: return .alreadyOnline
            case .invalidUsername, .registrationClosed:
                // A name given on the command line cannot be re-asked; a typed one can.
                guard presetUsername == nil else { return .badCredentials }
                username = nil
            case .rateLimited: return .otherError
            default: return .otherError
            }
        }
    }

    /// Shows events as they arrive, acking stored messages after they are shown.
    private func pumpEvents() async -> ExitStatus? {
        var ending: LogoutReason?
        for await event in connection.events {
            if let names = state.updateUsers({ $0.apply(event) }) { onlineUsersChanged(names) }
            if await privateChat.handle(event) {
                state.markEventProcessed()
                continue
            }
            if case .loggedOut(let reason) = event, reason != .logout {
                await privateChat.closeAll(reason: reason == .timeout ? "timed out" : "lost the connection to the server")
            }
            show(.event(event))
            if case .message(_, _, let delivery?, _) = event {
                // Only now is it shown; the ack lets the server forget it (exactly-once delivery).
                try? await connection.sendWithoutReply(.ack(delivery: delivery))
            }
            if case .loggedOut(let reason) = event { ending = reason }
            state.markEventProcessed()
        }
        state.markAllEventsProcessed()
        if state.logoutRequested { return nil }  // the command loop finishes after showing the reply
        switch ending {
        case .timeout: return .timedOut
        case .logout: return .ok
        case .duplicate, .serverShutdown, .slowConsumer: return .connectionLost
        case nil:
            let error = await connection.waitUntilClosed() ?? .connectionClosed
            return showFailure(error)
        }
    }

    /// Waits (bounded) until the event pump has shown everything received so far.
    private func catchUpWithEvents() async {
        let target = await connection.eventsDelivered()
        let deadline = ContinuousClock.now + replyTimeout
        while !state.hasProcessed(target), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Stored messages come right after login but not in step with replies, so a logout sent too
    /// early would overtake their acks (they would be shown again next time). Silent round trips
    /// until the event count stops moving (bounded) let them arrive, be shown and be acked first.
    private func settleBeforeLogout() async {
        for _ in 0..<5 {
            let before = await connection.eventsDelivered()
            _ = try? await connection.send(.whoelse, timeout: replyTimeout)
            try? await Task.sleep(for: .milliseconds(50))
            await catchUpWithEvents()
            if await connection.eventsDelivered() == before { return }
        }
    }

    /// Reads commands, sending each and showing its reply before reading the next.
    private func readCommands() async -> ExitStatus? {
        while true {
            await privateChat.remindIfPrompting()
            guard let line = await input.readLine(prompt: "> ") else {
                // End of input: log out cleanly, but never hang on a server that does not answer.
                await privateChat.closeAll(reason: "logged out")
                await settleBeforeLogout()
                state.requestLogout()
                if let reply = try? await connection.send(.logout, timeout: replyTimeout) {
                    await catchUpWithEvents()
                    show(.reply(reply, command: .logout))
                }
                await connection.close()
                return .ok
            }
            await catchUpWithEvents()
            if await privateChat.answer(line) { continue }  // the y/n to a private request
            switch CommandMapper.action(for: line) {
            case .nothing: continue
            case .local(let local): show(.local(local))
            case .privateCommand(let command): await privateChat.run(command)
            case .send(let request, let command):
                // Show (and ack) what arrived before this command first, so output follows the wire.
                await catchUpWithEvents()
                if command == .logout {
                    await privateChat.closeAll(reason: "logged out")
                    await settleBeforeLogout()
                    state.requestLogout()
                }
                let reply: Reply
                do {
                    reply = try await connection.send(request, timeout: replyTimeout)
                } catch ClientError.timedOut {
                    show(.local(.clientError(code: "no_reply", message: "Error. The server did not answer in time")))
                    continue
                } catch {
                    if command == .logout { return .ok }
                    return nil  // the connection is gone; the event pump reports why
                }
                if let names = state.updateUsers({ $0.apply(reply: reply, command: command) }) {
                    onlineUsersChanged(names)
                }
                await catchUpWithEvents()
                show(.reply(reply, command: command))
                if command == .logout {
                    await connection.close()
                    return .ok
                }
            }
        }
    }
}

/// State shared by the two halves of a running session.
private final class SessionState: @unchecked Sendable {
    // NSLock guards every field; the halves run on arbitrary executors.
    private let lock = NSLock()
    private var _logoutRequested = false
    private var finisher: CheckedContinuation<ExitStatus, Never>?
    private var finished: ExitStatus?

    private var users = OnlineUsers()

    /// Applies `change` to the online set; returns the new names if they changed.
    func updateUsers(_ change: (inout OnlineUsers) -> Void) -> Set<String>? {
        lock.withLock {
            let before = users
            change(&users)
            return users == before ? nil : users.names
        }
    }

    private var eventsProcessed = 0
    private var pumpFinished = false

    func markEventProcessed() { lock.withLock { eventsProcessed += 1 } }
    func markAllEventsProcessed() { lock.withLock { pumpFinished = true } }
    func hasProcessed(_ count: Int) -> Bool { lock.withLock { pumpFinished || eventsProcessed >= count } }

    var logoutRequested: Bool { lock.withLock { _logoutRequested } }
    func requestLogout() { lock.withLock { _logoutRequested = true } }

    func setFinisher(_ continuation: CheckedContinuation<ExitStatus, Never>) {
        lock.withLock { finisher = continuation }
    }

    /// Ends the session with `status`; later calls are ignored.
    func finish(_ status: ExitStatus) {
        let continuation: CheckedContinuation<ExitStatus, Never>? = lock.withLock {
            guard finished == nil else { return nil }
            finished = status
            defer { finisher = nil }
            return finisher
        }
        continuation?.resume(returning: status)
    }
}
