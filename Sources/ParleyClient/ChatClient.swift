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

/// Runs one chat session as one loop over one ordered stream of events: typed lines, server
/// frames, private-link activity and timers. `ClientStateMachine` decides; this loop only
/// carries its actions out, so there is no second task to keep in step.
public final class ChatClient: Sendable {
    private let connection: ServerConnection
    private let input: LineSource
    private let output: OutputSink
    private let format: OutputFormat
    private let username: String?
    private let configuration: ClientStateMachine.Configuration
    private let onlineUsersChanged: @Sendable (Set<String>) -> Void
    private let privateConnectTimeout: TimeAmount
    /// Frames taken off the wire and not yet handled by the loop; bounded like the old buffer.
    private let unhandledFrames = NIOLockedValueBox(0)
    private let frameBacklogLimit: Int

    /// - Parameters:
    ///   - username: use this name instead of asking for one.
    ///   - replyTimeout: how long to wait for each reply before reporting it missing.
    ///   - onlineUsersChanged: called with the new set whenever presence or `whoelse` changes it.
    public init(
        connection: ServerConnection, input: LineSource, output: OutputSink, format: OutputFormat,
        username: String? = nil, replyTimeout: Duration = .seconds(10), frameBacklogLimit: Int = 4096,
        privateConnectTimeout: TimeAmount = .seconds(10),
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
        self.configuration = configuration
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
        let (writes, writer) = AsyncStream.makeStream(of: ByteBuffer.self)
        let channel = connection.channel
        let result = try? await channel.executeThenClose { inbound, outbound in
            // The wire in order, into the one stream.
            let reader = Task { [unhandledFrames, frameBacklogLimit] in
                do {
                    for try await frame in inbound {
                        sink.yield(.client(.frame(frame)))
                        // Never drop silently: closing makes the server re-send unacked stored messages later.
                        if unhandledFrames.withLockedValue({ $0 += 1; return $0 }) > frameBacklogLimit {
                            sink.yield(.client(.connectionClosed(.eventBufferOverflow)))
                            channel.channel.close(promise: nil)
                            return
                        }
                    }
                    sink.yield(.client(.connectionClosed(nil)))
                } catch {
                    sink.yield(.client(.connectionClosed(ServerConnection.clientError(for: error))))
                }
            }
            // Requests leave in the order the loop wrote them; the loop itself never waits on the socket.
            let sender = Task {
                for await buffer in writes {
                    do { try await outbound.write(buffer) } catch { return }
                }
            }
            var loop = ChatClientLoop(client: self, sink: sink, writer: writer, eventLoop: channel.channel.eventLoop)
            let status = await loop.run(events)
            await loop.links.closeAll()  // peers hear why before the process exits
            writer.finish()
            // Acks and the logout go out before the close; a server that stopped reading gets
            // one reply timeout to take them, then the close cuts the writes short.
            let cutOff = channel.channel.eventLoop.scheduleTask(in: .nanoseconds(configuration.replyTimeout.nanoseconds)) {
                channel.channel.close(promise: nil)
            }
            await sender.value
            cutOff.cancel()
            try? await channel.channel.close()
            await reader.value
            sink.finish()
            return status
        }
        return result ?? .connectionLost
    }

    fileprivate func show(_ item: Output) {
        let lines = Presenter.render(item, format: format)
        if !lines.isEmpty { output.emit(lines) }
    }

    fileprivate var bindHost: String { connection.localHost ?? "127.0.0.1" }

    fileprivate func makeMachine() -> ClientStateMachine {
        ClientStateMachine(username: username, configuration: configuration)
    }

    fileprivate func frameHandled() { unhandledFrames.withLockedValue { $0 -= 1 } }

    fileprivate var readInput: LineSource { input }
    fileprivate var connectTimeout: TimeAmount { privateConnectTimeout }
    fileprivate func usersChanged(_ names: Set<String>) { onlineUsersChanged(names) }
}

/// What reaches the loop: the machine's events, plus the I/O objects the edges hand over.
enum LoopEvent: Sendable {
    case client(ClientEvent)
    case linkReady(PrivateAttempt, PrivateLink)
    case listenerReady(PrivateAttempt, PrivateListener, fingerprint: String)
}

/// The loop: takes events in order, asks the machine, carries out the actions. Owned by the one
/// task that runs it, so nothing here needs a lock.
private struct ChatClientLoop {
    let client: ChatClient
    let sink: AsyncStream<LoopEvent>.Continuation
    let writer: AsyncStream<ByteBuffer>.Continuation
    let eventLoop: EventLoop
    var machine: ClientStateMachine
    var timers: [ClientTimer: Scheduled<Void>] = [:]
    let links: PrivateEdge

    init(client: ChatClient, sink: AsyncStream<LoopEvent>.Continuation, writer: AsyncStream<ByteBuffer>.Continuation, eventLoop: EventLoop) {
        self.client = client
        self.sink = sink
        self.writer = writer
        self.eventLoop = eventLoop
        self.machine = client.makeMachine()
        self.links = PrivateEdge(sink: sink, bindHost: client.bindHost, timeout: client.connectTimeout)
    }

    mutating func run(_ events: AsyncStream<LoopEvent>) async -> ExitStatus {
        if let status = perform(machine.start()) { return status }
        for await event in events {
            let actions: [ClientAction]
            switch event {
            case .client(let clientEvent):
                if case .frame = clientEvent { client.frameHandled() }
                actions = machine.handle(clientEvent)
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
        return .connectionLost  // not reached: the reader always reports the end of the connection
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
            case .close:
                for timer in timers.values { timer.cancel() }
                timers = [:]
            case .exit(let status):
                return status
            }
        }
        return nil
    }

    private func write(_ request: Request, id: Int64?) {
        var buffer = ByteBufferAllocator().buffer(capacity: 128)
        request.encode(id: id, into: &buffer)
        writer.yield(buffer)
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
