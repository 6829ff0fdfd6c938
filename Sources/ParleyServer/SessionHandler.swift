import Foundation
import Logging
import NIOCore
import ParleyProtocol
import ParleyTLS

/// One client connection above TLS and framing: turns frames into requests, runs them strictly
/// in order, and writes replies and events. Owns the connection's login state and idle timer.
final class SessionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case connected
        case online(Session)
        /// Logged out, waiting (bounded) for acks of stored messages already sent.
        case leaving(name: String)
        case closed
    }

    let service: ChatService
    let logger: Logger
    var phase = Phase.connected
    var context: ChannelHandlerContext!
    /// Frames that arrived while an earlier request was still waiting on the store or hasher.
    var queue = CircularBuffer<Frame>(initialCapacity: 4)
    var busy = false
    var readSuppressed = false
    var badFramesInARow = 0
    var lastActivity = NIODeadline.now()
    var idleTimer: Scheduled<Void>?
    /// The login under way, if any (cancelled when the connection ends).
    var loginTask: Task<Void, Never>?
    /// Stored messages sent in this session and not yet acknowledged.
    var unacked: Set<Int64> = []
    private static let maxQueuedFrames = 32
    /// Encoded once: every connection gets the same greeting.
    private static let hello = ServerMessage.hello(
        version: Limits.protocolVersion, server: "parley-server \(ParleyServerVersion.string)"
    ).frame()

    init(service: ChatService, logger: Logger) {
        self.service = service
        self.logger = logger
        service.connectionOpened()
    }

    deinit {
        service.connectionFreed()
    }

    var configuration: ServerConfiguration { service.configuration }

    var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

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
        armIdleTimer(after: configuration.loginTimeout)
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectionEnded()
        context.fireChannelInactive()
    }

    /// Ends the session and drops what waits on it; safe to call more than once.
    private func connectionEnded() {
        idleTimer?.cancel()
        idleTimer = nil
        endSession(reason: "disconnected")
        loginTask?.cancel()
        loginTask = nil
        phase = .closed
        queue.removeAll()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .online(let session) = phase { session.writabilityChanged(writable: context.channel.isWritable) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // The TLS layer logs its own failures with the peer's address; anything else is logged here.
        if !(error is TLSError) {
            logger.debug("connection error: \(error)")
        }
        context.close(promise: nil)
    }

    // MARK: inbound, strictly ordered

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if busy || !queue.isEmpty {
            queue.append(frame)
            return
        }
        process(frame)
    }

    func read(context: ChannelHandlerContext) {
        // Backpressure: while requests wait on the store, stop reading once the queue is full.
        if queue.count >= Self.maxQueuedFrames {
            readSuppressed = true
        } else {
            context.read()
        }
    }

    func drainQueue() {
        while !busy, !isClosed, let next = queue.popFirst() {
            process(next)
        }
        if readSuppressed, queue.count < Self.maxQueuedFrames {
            readSuppressed = false
            context.read()
        }
    }

    private func process(_ frame: Frame) {
        switch frame {
        case .tooLarge:
            badFrame(ProtocolError(.frameTooLarge, "frame larger than \(configuration.maxFrameBytes) bytes"))
        case .line(let line):
            do {
                let (id, request) = try Request.decode(from: line)
                badFramesInARow = 0
                configuration.requestObserver?(request)
                handle(request, id: id)
            } catch {
                badFrame(error)
            }
        }
    }

    private func badFrame(_ error: ProtocolError) {
        badFramesInARow += 1
        if badFramesInARow >= configuration.maxBadFramesInARow {
            logger.notice("closing connection after repeated bad frames", metadata: peerMetadata)
            send(.error(code: error.code, message: "too many bad requests; closing the connection"), flush: true)
            endSession(reason: "repeated bad frames")
            phase = .closed
            context.close(promise: nil)
            return
        }
        send(.reply(.error(error)), flush: true)
    }

    // MARK: requests

    private func handle(_ request: Request, id: Int64?) {
        switch phase {
        case .closed:
            return
        case .connected:
            guard case .login(let username, let password, let version) = request else {
                reply(id, .notLoggedIn)
                return
            }
            guard version == Limits.protocolVersion else {
                reply(id, .unsupportedVersion, "Error. This server speaks protocol version \(Limits.protocolVersion)")
                return
            }
            login(username: username, password: password, id: id)
        case .online(let session):
            lastActivity = .now()
            handleOnline(request, id: id, session: session)
        case .leaving(let name):
            if case .ack(let delivery) = request { acknowledge(delivery, id: id, name: name) }
        }
    }

    private func handleOnline(_ request: Request, id: Int64?, session: Session) {
        switch request {
        case .login:
            reply(id, .alreadyLoggedIn)
        case .message(let to, let text):
            message(to: to, text: text, id: id, session: session)
        case .broadcast(let text):
            guard Validation.isValidText(text) else { return reply(id, .badFrame, "Error. Message must be 1 to 4096 bytes") }
            let skip = service.hub.blockers(of: session.name)
            let frame = ServerMessage.broadcast(from: session.displayName, text: text).frame(allocator: context.channel.allocator)
            service.hub.fanOut(frame, except: session.name, skipping: skip)
            let unreachable = !skip.isEmpty && service.hub.isAnyOnline(skip)
            send(.reply(.ok(id: id, .broadcast(unreachable: unreachable))))
        case .whoelse:
            send(.reply(.ok(id: id, .users(service.hub.onlineNames(visibleTo: session.name)))))
        case .whoelsesince(let seconds):
            runAsync({ [service] in await service.usersActive(withinLast: seconds, viewer: session.name) }) { result in
                switch result {
                case .success(let users): self.send(.reply(.ok(id: id, .users(users))))
                case .failure(let error): self.reply(id, error)
                }
            }
        case .block(let user), .unblock(let user):
            let active = if case .block = request { true } else { false }
            let target = Validation.canonicalUsername(user)
            guard Validation.isValidUsername(user) else { return reply(id, .unknownUser) }
            guard target != session.name else { return reply(id, active ? .cannotBlockSelf : .notBlocked) }
            runAsync({ [service] in await service.setBlock(blocker: session.name, blocked: target, active: active) }) { error in
                if let error {
                    self.reply(id, error)
                    return
                }
                if active { self.privateBlockChanged(blocked: target, session: session) }
                self.send(.reply(.ok(id: id)))
            }
        case .logout:
            send(.reply(.ok(id: id)))
            send(.loggedOut(reason: .logout), flush: true)
            logger.info("logout", metadata: ["user": "\(session.name)"])
            logOut(session)
        case .ack(let delivery):
            acknowledge(delivery, id: id, name: session.name)
        case .active:
            if id != nil { send(.reply(.ok(id: id))) }
        case .startPrivate, .privateAnswer, .stopPrivate:
            handlePrivate(request, id: id, session: session)
        }
    }

    private func message(to: String, text: String, id: Int64?, session: Session) {
        guard Validation.isValidText(text) else { return reply(id, .badFrame, "Error. Message must be 1 to 4096 bytes") }
        guard Validation.isValidUsername(to) else { return reply(id, .unknownUser) }
        let recipient = Validation.canonicalUsername(to)
        guard recipient != session.name else { return reply(id, .cannotMessageSelf) }
        if service.hub.blockers(of: session.name).contains(recipient) {
            return reply(id, .recipientBlockedYou)
        }
        let frame = ServerMessage.message(from: session.displayName, text: text).frame(allocator: context.channel.allocator)
        let service = self.service
        let sender = session.displayName
        let delivered = service.hub.deliver(frame, to: recipient) {
            // The recipient left between lookup and delivery: keep the message for their next login.
            service.work.detached { _ = await service.storeOffline(to: recipient, from: sender, text: text) }
        }
        if delivered {
            send(.reply(.ok(id: id)))
            return
        }
        runAsync({ await service.storeOffline(to: recipient, from: sender, text: text) }) { error in
            if let error { self.reply(id, error) } else { self.send(.reply(.ok(id: id))) }
        }
    }
}

/// The server's version string, sent in `hello`.
public enum ParleyServerVersion {
    public static let string = "0.1.0"
}
