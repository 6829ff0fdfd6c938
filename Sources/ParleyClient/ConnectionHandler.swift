import NIOCore
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// The pipeline end of a `ChatConnection`: matches replies to requests, forwards everything else.
///
/// All mutable state is touched only on the channel's event loop (handler callbacks, and the
/// closures `ChatConnection` submits to that loop), which is why `@unchecked Sendable` is sound.
final class ConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    let hello: EventLoopPromise<(version: Int64, server: String)>
    let closed: EventLoopPromise<ClientError?>
    private let events: AsyncStream<ServerMessage>.Continuation
    private let helloTimeout: TimeAmount
    private var context: ChannelHandlerContext?
    private var pending: [Int64: EventLoopPromise<Reply>] = [:]
    private var nextID: Int64 = 1
    private var gotHello = false
    private var failure: ClientError?
    private var helloTimer: Scheduled<Void>?

    init(eventLoop: EventLoop, events: AsyncStream<ServerMessage>.Continuation, helloTimeout: TimeAmount) {
        self.hello = eventLoop.makePromise()
        self.closed = eventLoop.makePromise()
        self.events = events
        self.helloTimeout = helloTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        helloTimer = context.eventLoop.assumeIsolated().scheduleTask(in: helloTimeout) { [self] in
            if !gotHello { fail(.timedOut) }
        }
    }

    /// Breaks the handler <-> context cycle.
    func handlerRemoved(context: ChannelHandlerContext) {
        helloTimer?.cancel()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let message = ServerMessage.fromServer(unwrapInboundIn(data)) else { return }
        guard gotHello else {
            guard case .hello(let version, let server) = message else {
                return fail(.protocolViolation("expected hello, got another frame first"))
            }
            gotHello = true
            helloTimer?.cancel()
            hello.succeed((version, server))
            return
        }
        if case .reply(let reply) = message, let id = reply.id, let promise = pending.removeValue(forKey: id) {
            promise.succeed(reply)
            return
        }
        switch events.yield(message) {
        case .enqueued: break
        case .dropped:
            // Never drop silently: closing makes the server re-send unacked offline messages later.
            fail(.eventBufferOverflow)
        case .terminated: break
        @unknown default: break
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let client = error as? ClientError {
            fail(client)
        } else if let tls = error as? TLSError {
            // The server closing right after `loggedout` without close_notify is just a close.
            if tls == .uncleanShutdown { return }
            fail(.tls(tls))
        } else {
            fail(.protocolViolation(String(describing: error)))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        helloTimer?.cancel()
        let error = failure ?? .connectionClosed
        if !gotHello {
            gotHello = true
            hello.fail(error)
        }
        let waiting = pending
        pending = [:]
        for promise in waiting.values { promise.fail(error) }
        events.finish()
        closed.succeed(failure)
        self.context = nil
        context.fireChannelInactive()
    }

    /// Records the first failure and closes; `channelInactive` then fails everything waiting.
    private func fail(_ error: ClientError) {
        if failure == nil { failure = error }
        context?.close(promise: nil)
    }

    /// Writes `request`; with `expectReply` it gets the next id and the future completes with its reply.
    func send(_ request: Request, expectReply: Bool, on eventLoop: EventLoop) -> EventLoopFuture<Reply?> {
        guard let context, context.channel.isActive else {
            return eventLoop.makeFailedFuture(failure ?? .connectionClosed)
        }
        var buffer = context.channel.allocator.buffer(capacity: 128)
        let promise = eventLoop.makePromise(of: Reply.self)
        if expectReply {
            let id = nextID
            nextID += 1
            pending[id] = promise
            request.encode(id: id, into: &buffer)
        } else {
            request.encode(id: nil, into: &buffer)
        }
        context.writeAndFlush(wrapOutboundOut(buffer)).whenFailure { [self] _ in
            for (id, p) in pending where p.futureResult === promise.futureResult {
                pending[id] = nil
                p.fail(failure ?? .connectionClosed)
            }
        }
        guard expectReply else {
            promise.succeed(.ok(id: nil))
            return promise.futureResult.map { _ in nil }
        }
        return promise.futureResult.map { Optional($0) }
    }

    /// Closes the channel (TLS close_notify first); completes when it is closed.
    func close(on eventLoop: EventLoop) -> EventLoopFuture<Void> {
        guard let context else { return eventLoop.makeSucceededVoidFuture() }
        let promise = eventLoop.makePromise(of: Void.self)
        context.close(promise: promise)
        return promise.futureResult.recover { _ in }
    }
}
