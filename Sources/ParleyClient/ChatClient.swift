import NIOConcurrencyHelpers
import NIOCore
import ParleyCrypto
import ParleyProtocol
import ParleyProtocolNIO

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

/// How a session makes a new server connection after losing one (see `ReconnectPolicy`).
public struct Reconnection: Sendable {
    public var policy: ReconnectPolicy
    /// Connects to one server: TLS verified and `hello` received, as `ServerConnection.connect`.
    public var connect: @Sendable (ServerEndpoint) async throws(ClientError) -> ServerConnection

    public init(policy: ReconnectPolicy, connect: @escaping @Sendable (ServerEndpoint) async throws(ClientError) -> ServerConnection) {
        self.policy = policy
        self.connect = connect
    }
}

/// Runs one chat session as one loop over one ordered stream of events: typed lines, server
/// frames, private-link activity and timers. `ClientStateMachine` decides; this loop only
/// carries its actions out, so there is no second task to keep in step. A lost server
/// connection is replaced by a new one inside the same loop (when `reconnection` is given).
public final class ChatClient: Sendable {
    private let connection: ServerConnection
    private let input: LineSource
    private let output: OutputSink
    private let format: OutputFormat
    private let username: String?
    private let configuration: ClientStateMachine.Configuration
    private let reconnection: Reconnection?
    private let onlineUsersChanged: @Sendable (Set<String>) -> Void
    private let privateConnectTimeout: TimeAmount
    /// Frames taken off the wire and not yet handled by the loop; bounded like the old buffer.
    private let unhandledFrames = NIOLockedValueBox(0)
    private let frameBacklogLimit: Int

    /// - Parameters:
    ///   - username: use this name instead of asking for one.
    ///   - replyTimeout: how long to wait for each reply before reporting it missing.
    ///   - reconnection: how to reconnect after losing the server without a logout; nil ends the session.
    ///   - onlineUsersChanged: called with the new set whenever presence or `whoelse` changes it.
    public init(
        connection: ServerConnection, input: LineSource, output: OutputSink, format: OutputFormat,
        username: String? = nil, replyTimeout: Duration = .seconds(10), frameBacklogLimit: Int = 4096,
        privateConnectTimeout: TimeAmount = .seconds(10), reconnection: Reconnection? = nil,
        onlineUsersChanged: @escaping @Sendable (Set<String>) -> Void = { _ in }
    ) {
        self.connection = connection
        self.input = input
        self.output = output
        self.format = format
        self.username = username
        var configuration = ClientStateMachine.Configuration()
        configuration.replyTimeout = replyTimeout
        configuration.listenTimeout = .nanoseconds(privateConnectTimeout.nanoseconds * 3)
        configuration.reconnect = reconnection?.policy
        // Typed unseen on a terminal, so asked twice there; a script gives it once.
        configuration.confirmNewPassword = input.isInteractive
        self.configuration = configuration
        self.reconnection = reconnection
        self.privateConnectTimeout = privateConnectTimeout
        self.frameBacklogLimit = frameBacklogLimit
        self.onlineUsersChanged = onlineUsersChanged
    }

    /// Maps a connection failure to the exit status the client reports.
    public static func exitStatus(for error: ClientError) -> ExitStatus {
        switch error {
        case .tls(.certificateVerificationFailed): .certificateFailed
        case .tls(.closedDuringHandshake), .tls(.uncleanShutdown), .connectFailed, .connectionClosed, .timedOut,
             .eventBufferOverflow, .refused:
            .connectionLost
        case .tls, .protocolViolation, .unsupportedVersion: .otherError
        }
    }

    /// Runs the whole session and returns the process exit status it ended with.
    public func run() async -> ExitStatus {
        let (events, sink) = AsyncStream.makeStream(of: LoopEvent.self)
        var loop = ChatClientLoop(client: self, sink: sink, eventLoop: connection.channel.channel.eventLoop)
        loop.attach(connection)
        let status = await loop.run(events)
        await loop.links.closeAll()  // peers hear why before the process exits
        await loop.detach(cutOff: configuration.replyTimeout)
        sink.finish()
        return status
    }

    fileprivate func show(_ item: Output) {
        let lines = Presenter.render(item, format: format)
        if !lines.isEmpty { output.emit(lines) }
    }

    fileprivate func makeMachine() -> ClientStateMachine {
        ClientStateMachine(username: username, configuration: configuration)
    }

    fileprivate func frameHandled() { unhandledFrames.withLockedValue { $0 -= 1 } }

    fileprivate func pipe(for connection: ServerConnection, generation: Int, sink: AsyncStream<LoopEvent>.Continuation) -> ServerPipe {
        ServerPipe(connection, generation: generation, sink: sink, unhandled: unhandledFrames, limit: frameBacklogLimit)
    }

    fileprivate var connector: Reconnection? { reconnection }
    fileprivate var readInput: LineSource { input }
    fileprivate var connectTimeout: TimeAmount { privateConnectTimeout }
    fileprivate func usersChanged(_ names: Set<String>) { onlineUsersChanged(names) }
}

/// What reaches the loop: the machine's events, plus the I/O objects the edges hand over.
enum LoopEvent: Sendable {
    case client(ClientEvent)
    /// A frame or the end of the server connection numbered `generation`; the loop drops those of
    /// a connection it has already let go.
    case server(generation: Int, ClientEvent)
    /// A reconnect's connection is in the `ConnectSlot`.
    case serverReady
    case linkReady(PrivateAttempt, PrivateLink)
    case listenerReady(PrivateAttempt, PrivateListener, fingerprint: String)
}

/// The loop: takes events in order, asks the machine, carries out the actions. Owned by the one
/// task that runs it, so nothing here needs a lock.
private struct ChatClientLoop {
    let client: ChatClient
    let sink: AsyncStream<LoopEvent>.Continuation
    var machine: ClientStateMachine
    var timers: [ClientTimer: Scheduled<Void>] = [:]
    let links: PrivateEdge
    /// The server connection in use; nil while reconnecting.
    var server: ServerPipe?
    var generation = 0
    /// Connections let go of (lost or dropped), waited for at the end.
    var retired: [ServerPipe] = []
    let slot = ConnectSlot()
    /// Timers run here: the first connection's event loop, which outlives any one connection.
    let eventLoop: EventLoop

    init(client: ChatClient, sink: AsyncStream<LoopEvent>.Continuation, eventLoop: EventLoop) {
        self.client = client
        self.sink = sink
        self.machine = client.makeMachine()
        self.links = PrivateEdge(sink: sink, bindHost: "127.0.0.1", timeout: client.connectTimeout)
        self.eventLoop = eventLoop
    }

    /// Uses `connection` from now on; what the previous one still reports is ignored.
    mutating func attach(_ connection: ServerConnection) {
        generation += 1
        server = client.pipe(for: connection, generation: generation, sink: sink)
        // A private listener binds where this client reaches the server from, which may change.
        links.bindHost = connection.localHost ?? "127.0.0.1"
    }

    private mutating func letGo() {
        guard let server else { return }
        server.abandon()
        retired.append(server)
        self.server = nil
    }

    /// Sends what is queued (bounded by `cutOff`), closes, and waits for every connection's end.
    mutating func detach(cutOff: Duration) async {
        if let connection = slot.close() { try? await connection.channel.channel.close() }
        if let server { await server.finish(cutOff: cutOff) }
        server = nil
        for pipe in retired { await pipe.finished() }
        retired = []
    }

    mutating func run(_ events: AsyncStream<LoopEvent>) async -> ExitStatus {
        if let status = perform(machine.start()) { return status }
        for await event in events {
            let actions: [ClientAction]
            switch event {
            case .client(let clientEvent):
                actions = machine.handle(clientEvent)
            case .server(let number, let serverEvent):
                if case .frame = serverEvent { client.frameHandled() }
                guard number == generation, server != nil else { continue }
                if case .connectionClosed = serverEvent { letGo() }
                actions = machine.handle(serverEvent)
            case .serverReady:
                guard let connection = slot.take() else { continue }
                attach(connection)
                actions = machine.handle(.serverConnected)
            case .linkReady(let attempt, let link):
                links.adopt(link, for: attempt)
                actions = machine.handle(.privateLink(.opened(
                    attempt: attempt, safetyCode: link.safetyCode, peerFingerprint: Hex.encode(link.peerFingerprint))))
            case .listenerReady(let attempt, let listener, let fingerprint):
                links.listeners[attempt] = listener
                actions = machine.handle(.privateLink(.listening(attempt: attempt, port: UInt16(listener.port), fingerprint: fingerprint)))
            }
            if let status = perform(actions) { return status }
        }
        return .connectionLost  // not reached: the machine always ends the session
    }

    /// Carries out `actions` in order; the exit status once the machine says the session is over.
    private mutating func perform(_ actions: [ClientAction]) -> ExitStatus? {
        for action in actions {
            switch action {
            case .readLine(let prompt, let secret):
                let input = client.readInput
                Task { [sink] in
                    let line = secret ? await input.readSecret(prompt: prompt) : await input.readLine(prompt: prompt)
                    sink.yield(.client(line.map(ClientEvent.line) ?? .inputEnded))
                }
            case .send(let request, let id):
                write(request, id: id)
            case .sendStartPrivate(let user, let attempt, let id):
                switch links.makeIdentity(for: attempt) {
                case .success(let fingerprint):
                    write(.startPrivate(user: user, fingerprint: fingerprint), id: id)
                case .failure(let error):
                    let failed = machine.handle(.privateLink(.identityFailed(attempt: attempt, message: "\(error)")))
                    if let status = perform(failed) { return status }
                }
            case .listen(let attempt): links.listen(attempt)
            case .expect(let attempt, let expected): links.listeners[attempt]?.expect(expected)
            case .connect(let attempt, let host, let port, let expected): links.connect(attempt, host: host, port: port, expecting: expected)
            case .sendPrivate(let attempt, let text): links.links[attempt]?.write(text)
            case .stopListening(let attempt): links.listeners.removeValue(forKey: attempt)?.close()
            case .closePrivate(let attempt, let reason): links.close(attempt, reason: reason)
            case .show(let item): client.show(item)
            case .armTimer(let timer, let delay):
                timers.removeValue(forKey: timer)?.cancel()
                timers[timer] = eventLoop.scheduleTask(in: .nanoseconds(delay.nanoseconds)) { [sink] in
                    sink.yield(.client(.timerFired(timer)))
                }
            case .cancelTimer(let timer): timers.removeValue(forKey: timer)?.cancel()
            case .usersChanged(let names): client.usersChanged(names)
            case .connectServer(let endpoint):
                connect(endpoint)
            case .dropServer:
                letGo()
            case .close:
                for timer in timers.values { timer.cancel() }
                timers = [:]
            case .exit(let status):
                return status
            }
        }
        return nil
    }

    private func connect(_ endpoint: ServerEndpoint) {
        guard let connector = client.connector else {
            sink.yield(.client(.serverConnectFailed(.connectFailed("\(endpoint): reconnecting is off"))))
            return
        }
        Task { [sink, slot] in
            do throws(ClientError) {
                let connection = try await connector.connect(endpoint)
                // The session may have ended meanwhile: then nobody takes it, and it is closed here.
                if slot.offer(connection) { sink.yield(.serverReady) } else { try? await connection.channel.channel.close() }
            } catch {
                sink.yield(.client(.serverConnectFailed(error)))
            }
        }
    }

    private func write(_ request: Request, id: Int64?) {
        // Nothing to write to while reconnecting; the machine sends nothing that needs an answer then.
        guard let server else { return }
        var buffer = ByteBufferAllocator().buffer(capacity: 128)
        request.encode(id: id, into: &buffer)
        server.write(buffer)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
