import Foundation
import Logging
import NIOCore
import ParleyCluster
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// One client connection above TLS: splits its plaintext into frames, feeds frames, timer and task
/// outcomes to its `ConnectionStateMachine` and carries out the actions it returns (replies,
/// commands, timers, closing). The rules live in the machine; this class only does the I/O.
final class ClientHandler: ChannelDuplexHandler, NIOScheduledCallbackHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    typealias Machine = ConnectionStateMachine<SystemClock>

    let service: ChatService
    var logger: Logger { service.logger }
    private(set) var context: ChannelHandlerContext!
    /// Newline framing, here rather than in a `ByteToMessageHandler` of its own: that handler, its
    /// context and its buffers cost about half a KiB per idle connection.
    private var framer: LineFramer
    /// The start of a line still arriving; nil between lines, so an idle connection keeps no buffer.
    private var partialLine: ByteBuffer?
    /// Every rule about this connection's state (internal: the command extensions report to it).
    var machine: Machine
    /// The logged-in user as the fan-out sees them; nil before login and once the session ended.
    private(set) var onlineUser: OnlineUser?
    /// The connection's one timer (login deadline, idle timeout, wait for acks after logout).
    /// A scheduled callback into this handler: no promise or closures per arming (`Scheduled` has both).
    private var timer: NIOScheduledCallback?
    /// The login under way, if any: cancelled when the connection closes, so a login waiting for
    /// its name's turn stops waiting at once.
    var loginTask: Task<Void, Never>?
    /// Encoded once: every connection gets the same greeting.
    private static let hello = ServerMessage.hello(
        version: Limits.protocolVersion, server: "parley-server \(ParleyServerVersion.string)"
    ).frame()

    init(service: ChatService) {
        self.service = service
        let configuration = service.configuration
        self.framer = LineFramer(maxFrameBytes: configuration.maxFrameBytes)
        self.machine = Machine(
            clock: SystemClock(), idleTimeout: service.runtime.current.idleTimeout, loginTimeout: configuration.loginTimeout,
            maxBadFramesInARow: configuration.maxBadFramesInARow, commandRate: service.runtime.current.limits.commandRate)
        service.connectionOpened()
    }

    deinit {
        service.connectionFreed()
    }

    var configuration: ServerConfiguration { service.configuration }

    // MARK: lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    /// Breaks the handler <-> context cycle; without it every connection's pipeline outlives it.
    func handlerRemoved(context: ChannelHandlerContext) {
        connectionEnded()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(NIOAny(Self.hello), promise: nil)
        perform(machine.connected())
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionEnded()
        context.fireChannelInactive()
    }

    /// Ends the session and drops what waits on it; safe to call more than once.
    private func connectionEnded() {
        machine.channelClosed()
        cancelTimer()
        endConnection(.disconnected)
        loginTask?.cancel()
        loginTask = nil
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        onlineUser?.writabilityChanged(writable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // The TLS layer logs its own failures with the peer's address; anything else is logged here.
        if !(error is TLSError) {
            logger.debug("connection error: \(error)")
        }
        context.close(promise: nil)
    }

    // MARK: events in

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var partial = partialLine {
            partialLine = nil
            partial.writeBuffer(&bytes)
            bytes = partial
        }
        // A frame can end the connection; once the handler has left its pipeline, the rest is dropped.
        while self.context != nil, let frame = framer.next(&bytes) {
            received(frame)
        }
        // An unterminated tail at EOF is an incomplete frame: it is dropped with the handler.
        if bytes.readableBytes > 0 { partialLine = bytes }
    }

    private func received(_ frame: Frame) {
        let inbound = Machine.Inbound(frame, maxFrameBytes: configuration.maxFrameBytes)
        if let observer = configuration.requestObserver, case .request(let request, _) = inbound {
            observer(request)
        }
        perform(machine.received(inbound))
    }

    func read(context: ChannelHandlerContext) {
        // Backpressure: while requests wait on the store, the machine stops reads once its queue is full.
        if machine.mayRead() { context.read() }
    }

    func handleScheduledCallback(eventLoop: some EventLoop) {
        timer = nil
        guard context != nil else { return }
        perform(machine.timerFired())
    }

    /// The operator ends this session (admin socket); false if it was not logged in.
    func endedByOperator(_ reason: EndReason) -> Bool {
        guard context != nil else { return false }
        let action = machine.endedByOperator(reason)
        perform(action)
        return action != .none
    }

    /// What the operator's `who` shows of this connection; nil unless logged in.
    var sessionInfo: (address: String, idle: TimeAmount)? {
        guard context != nil, let idle = machine.idleTime else { return nil }
        let address = context.channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "?"
        return (address, idle)
    }

    /// Called by the session when the client stopped reading and its backlog passed the limit.
    func slowConsumer() {
        perform(machine.slowConsumer())
    }

    // MARK: actions out

    func perform(_ action: Machine.Action) {
        switch action {
        case .none:
            return
        case .resumeReading:
            context.read()
        case .reply(let reply):
            if case .error(.rateLimited, _) = reply.outcome { service.metrics.commandsRateLimited.increment() }
            send(.reply(reply))
        case .run(let command, let id):
            run(command, id: id)
        case .logOut(let id, let linger):
            send(.reply(.ok(id: id)))
            send(.loggedOut(reason: .logout), flush: true)
            if let name = onlineUser?.name { logger.info("logout", metadata: ["user": "\(name)"]) }
            endConnection(.loggedOut)
            // With stored messages unacked, the connection stays open (bounded) for their acks,
            // so a quick logout does not make them show twice.
            if let linger { arm(linger) } else { closeConnection() }
        case .arm(let deadline):
            arm(deadline)
        case .close(let reason):
            close(reason)
        }
    }

    /// Applies queued requests (and resumes reading) until one has to wait or there are none.
    func drain() {
        while let action = machine.nextAction() { perform(action) }
    }

    private func close(_ reason: EndReason) {
        cancelTimer()
        switch reason {
        case .loginDeadline:
            logger.info("closing a connection that did not log in in time", metadata: peerMetadata)
        case .idle:
            if let name = onlineUser?.name { logger.info("timeout", metadata: ["user": "\(name)"]) }
        case .badFrames(let code):
            logger.notice("closing connection after repeated bad frames", metadata: peerMetadata)
            send(.error(code: code, message: "too many bad requests; closing the connection"), flush: true)
        case .slowConsumer:
            logger.notice("disconnecting a client that stopped reading", metadata: peerMetadata)
            service.metrics.slowConsumerDisconnects.increment()
            // Ended first: the notice then goes straight to the channel, queued behind the backlog,
            // so a client that wakes up in time learns why it was dropped.
            endConnection(reason)
        case .kicked, .disabled:
            if let name = onlineUser?.name { logger.notice("logged out by the operator", metadata: ["user": "\(name)", "reason": "\(reason)"]) }
        case .accountLocked:
            if let name = onlineUser?.name { logger.notice("session ended: account locked by wrong passwords", metadata: ["user": "\(name)"]) }
        case .flooding:
            logger.notice("logging out a client that kept sending commands after rate_limited",
                          metadata: ["user": "\(onlineUser?.name ?? "-")", "peer": "\(peerDescription)"])
            service.metrics.floodingDisconnects.increment()
        case .loggedOut, .acksSettled, .disconnected, .serverStopping:
            break
        }
        if let wire = reason.wireReason { send(.loggedOut(reason: wire), flush: true) }
        endConnection(reason)
        closeConnection()
    }

    /// Flushes what is queued, then closes (TLS sends close_notify).
    private func closeConnection() {
        guard let context else { return }
        context.flush()
        context.close(promise: nil)
    }

    private func arm(_ deadline: NIODeadline) {
        timer?.cancel()
        timer = try? context.eventLoop.assumeIsolated().scheduleCallback(at: deadline, handler: self)
    }

    private func cancelTimer() {
        timer?.cancel()
        timer = nil
    }

    // MARK: session

    /// The user is online: the fan-out reaches them from now on.
    func wentOnline(_ onlineUser: OnlineUser) {
        self.onlineUser = onlineUser
    }

    /// Logs the user out of the hub (their private requests and pairs with it) and tells the
    /// others; safe to call more than once.
    func endConnection(_ reason: EndReason) {
        guard let onlineUser else { return }
        self.onlineUser = nil
        onlineUser.close()
        let hub = service.hub
        guard let entry = hub.unregister(onlineUser) else { return }
        service.metrics.usersLoggedIn.decrement()
        let why = reason.privateStopText(user: onlineUser.displayName)
        for (peer, link) in entry.privateLinks {
            // A lost server connection does not end a session already set up: the direct link is
            // the two clients' own (it says itself when it breaks), and the client reconnects.
            if reason == .disconnected, !link.isPending { continue }
            deliverPrivate(.privateStopped(user: onlineUser.displayName, reason: why), to: peer)
        }
        let presence = ServerMessage.presence(user: onlineUser.displayName, online: false).frame(allocator: context.channel.allocator)
        hub.fanOut(presence, except: onlineUser.name, skipping: entry.blocks)
        service.cluster.release(user: onlineUser.name, displayName: onlineUser.displayName, blocks: entry.blocks.sorted())
        logger.info("session ended", metadata: ["user": "\(onlineUser.name)", "reason": "\(reason)"])
        let name = onlineUser.name
        service.background { await $0.recordLogout(name) }
    }

    // MARK: plumbing

    /// Runs `work` off the event loop through the service, then `then` back on it; requests
    /// arriving meanwhile wait in the machine's queue, so a connection's requests take effect in
    /// the order they were sent.
    /// `abandoned` gets the outcome when the connection closed before it came back (a claim to
    /// hand back, say).
    @discardableResult
    func runTask<T: Sendable>(
        _ work: @escaping @Sendable (ChatService) async -> T, abandoned: ((T) -> Void)? = nil,
        then: @escaping (T) -> Void
    ) -> Task<Void, Never>? {
        let task = service.start(on: context.eventLoop, work) { [self] outcome in
            guard machine.taskFinished() else {
                if let outcome { abandoned?(outcome) }
                return
            }
            guard let outcome else { return perform(machine.serverStopping()) }
            then(outcome)
            drain()
        }
        guard let task else {
            // Shutting down: the task could outlive this event loop, so the connection just closes.
            perform(machine.serverStopping())
            return nil
        }
        machine.taskStarted()
        return task
    }

    /// Queues a message to this client; replies ride the same per-loop flush as fan-out.
    func send(_ message: ServerMessage, flush: Bool = false) {
        let frame = message.frame(allocator: context.channel.allocator)
        if let onlineUser {
            onlineUser.send(frame)
            if flush { onlineUser.flushIfDirty() }
        } else {
            context.writeAndFlush(NIOAny(frame), promise: nil)
        }
    }

    func reply(_ id: Int64?, _ code: ErrorCode, _ message: String? = nil) {
        send(.reply(.error(id: id, code, message: message)))
    }

    func reply(_ id: Int64?, _ error: ProtocolError) {
        reply(id, error.code, error.message)
    }

    /// Sends to another online user, here or (relayed) on another node; one who left meanwhile has
    /// no private state left to update.
    func deliverPrivate(_ message: ServerMessage, to name: String) {
        switch service.hub.location(of: name) {
        case .local:
            _ = service.hub.deliver(message.frame(allocator: context.channel.allocator), to: name, onMiss: {})
        case .remote(let node):
            if let relay = PrivateRelay(relaying: message) { service.cluster.send(.privateLink(to: name, relay), to: node) }
        case .offline:
            return
        }
    }

    var peerDescription: String { context.channel.remoteAddress.map { "\($0)" } ?? "?" }
    var peerMetadata: Logger.Metadata { ["peer": "\(peerDescription)"] }
}

/// The server's version string, sent in `hello`.
public enum ParleyServerVersion {
    public static let string = "0.1.0"
}
