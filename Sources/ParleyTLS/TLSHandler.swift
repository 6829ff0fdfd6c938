import Logging
import NIOCore

/// What a completed handshake negotiated.
public struct TLSSessionInfo: Sendable, Equatable {
    /// "TLSv1.3" under Parley's policy.
    public var protocolVersion: String
    /// The negotiated suite, e.g. "TLS_AES_128_GCM_SHA256".
    public var cipherSuite: String
    /// SHA-256 of the peer's public key, when the peer presented a certificate.
    public var peerFingerprint: [UInt8]?
    /// 32 bytes from the TLS exporter, identical on both ends of one session (private-session safety codes).
    public var exportedSecret: [UInt8]?
}

/// Events the TLS handler sends down the pipeline.
public enum TLSEvent: Sendable, Equatable {
    /// The handshake finished and the peer verified.
    case handshakeCompleted(TLSSessionInfo)
    /// The peer sent close_notify: an orderly end, not a truncation.
    case peerClosedCleanly
}

/// A SwiftNIO handler that runs TLS over the channel through OpenSSL memory BIOs:
/// ciphertext below it, plaintext above it.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// The exporter label for safety codes (unregistered labels must start with EXPERIMENTAL).
    public static let exporterLabel = "EXPERIMENTAL parley safety code v1"

    private let settings: Settings
    private var tlsContext: TLSContext { settings.tlsContext }
    private var logger: Logger? { settings.logger }

    private var machine = TLSStateMachine()
    private var connection: TLSConnection?
    private var sawFirstByte = false
    private var pendingPlaintext: ByteBuffer?
    private var pendingPromises: [EventLoopPromise<Void>] = []
    private var flushRequested = false
    private var handshakeTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    private var closePromise: EventLoopPromise<Void>?
    private var receivedBytes = 0
    /// This handler's own context while it is in a pipeline, for `writeAndFlushDirectly`.
    /// The cycle it makes with the context is broken in `handlerRemoved`.
    private var ownContext: ChannelHandlerContext?

    /// Plaintext accumulated between flushes is encrypted early past this size so records stay full
    /// but memory stays bounded.
    private static let eagerEncryptThreshold = 64 * 1024

    /// A handler with its own settings (clients, private sessions, tests).
    public convenience init(
        context: TLSContext,
        serverHostname: String? = nil,
        pinnedFingerprint: [UInt8]? = nil,
        handshakeTimeout: TimeAmount = .seconds(10),
        closeNotifyTimeout: TimeAmount = .seconds(2),
        logger: Logger? = nil
    ) {
        self.init(settings: Settings(
            context: context, serverHostname: serverHostname, pinnedFingerprint: pinnedFingerprint,
            handshakeTimeout: handshakeTimeout, closeNotifyTimeout: closeNotifyTimeout, logger: logger))
    }

    /// A handler sharing `settings` with others (a server's connections).
    public init(settings: Settings) {
        self.settings = settings
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        ownContext = context
        if context.channel.isActive { startHandshake(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        closeTimer?.cancel()
        closePromise?.succeed()
        closePromise = nil
        failPendingWrites(TLSError.closedDuringHandshake)
        connection = nil
        ownContext = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        startHandshake(context: context)
        context.fireChannelActive()
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard machine.startHandshake() else { return }
        do {
            connection = try TLSConnection(
                context: tlsContext, serverHostname: settings.serverHostname, pinnedFingerprint: settings.pinnedFingerprint,
                allocator: context.channel.allocator)
        } catch {
            fail(context: context, error: error)
            return
        }
        let timeout = settings.handshakeTimeout
        handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            if machine.state == .handshaking { fail(context: context, error: .handshakeTimeout) }
        }
        driveHandshake(context: context)
    }

    // MARK: inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard let connection, machine.state != .closed else { return }
        if !sawFirstByte, buffer.readableBytes > 0 {
            sawFirstByte = true
            // A TLS connection opens with a handshake record (content type 22).
            if tlsContext.isServerSide, buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) != 0x16 {
                fail(context: context, error: .notTLS)
                return
            }
        }
        receivedBytes = buffer.readableBytes
        connection.receive(&buffer)
        if machine.state == .handshaking {
            driveHandshake(context: context)
        }
        if machine.state == .active || machine.state == .closing {
            readPlaintext(context: context)
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        // The handshake must progress even when no one above has asked for data yet.
        if machine.state == .handshaking { context.read() }
    }

    private func driveHandshake(context: ChannelHandlerContext) {
        guard let connection else { return }
        let result = connection.handshake()
        writeOutbound(context: context, flush: true)
        switch result {
        case .incomplete:
            return
        case .failed(let error):
            fail(context: context, error: error)
        case .complete:
            guard machine.handshakeCompleted() else { return }
            handshakeTimer?.cancel()
            handshakeTimer = nil
            // Only private sessions show a safety code; the exporter costs an HKDF per handshake.
            let info = connection.sessionInfo(exporterLabel: tlsContext.isPeer ? Self.exporterLabel : nil)
            context.fireUserInboundEventTriggered(TLSEvent.handshakeCompleted(info))
            // Writes made before the peer was verified go out only now.
            if pendingPlaintext != nil { encryptPending(context: context) }
            if flushRequested {
                flushRequested = false
                writeOutbound(context: context, flush: true)
            }
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let connection else { return }
        // Plaintext is never longer than the ciphertext that carried it, so size the buffer by what
        // arrived: small reads get small buffers, and nothing is kept between reads (idle memory).
        var plaintext = context.channel.allocator.buffer(capacity: min(max(receivedBytes, 256), 16_384))
        let result = connection.read(into: &plaintext)
        let produced = plaintext.readableBytes
        if produced > 0 {
            context.fireChannelRead(wrapInboundOut(plaintext))
        }
        switch result {
        case .data, .wantMore:
            if !machine.received(ciphertext: receivedBytes, plaintext: produced) {
                fail(context: context, error: .protocolFailure(["peer sent over 64 KiB of TLS records without data"]))
            }
        case .failed(let error):
            fail(context: context, error: error)
        case .closeNotify:
            context.fireUserInboundEventTriggered(TLSEvent.peerClosedCleanly)
            switch machine.receivedCloseNotify() {
            case .replyAndClose:
                connection.shutdown()
                writeOutbound(context: context, flush: true)
                context.close(promise: nil)
            case .closeNow:
                closeTimer?.cancel()
                let promise = closePromise
                closePromise = nil
                context.close(promise: promise)
            case .ignore:
                return
            }
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        handshakeTimer?.cancel()
        closeTimer?.cancel()
        // Our close was waiting for the peer's close_notify; the socket is gone, so it is done.
        closePromise?.succeed()
        closePromise = nil
        switch machine.channelInactive() {
        case .none:
            failPendingWrites(ChannelError.ioOnClosedChannel)
        case .failHandshake:
            failPendingWrites(TLSError.closedDuringHandshake)
            settings.handshakeFailed?(.closedDuringHandshake)
            logger?.debug("connection closed during TLS handshake")
        case .uncleanShutdown:
            failPendingWrites(TLSError.uncleanShutdown)
            context.fireErrorCaught(TLSError.uncleanShutdown)
        }
        connection = nil
        context.fireChannelInactive()
    }

    // MARK: outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        enqueue(unwrapOutboundIn(data), promise: promise, context: context)
    }

    /// `write` then `flush` for a caller on this channel's loop that holds the handler (the server's
    /// fan-out): the same ordering behind earlier writes and the same fail-closed rules, without
    /// a trip through the handlers above. Ignored once the handler has left its pipeline.
    public func writeAndFlushDirectly(_ plaintext: ByteBuffer) {
        guard let context = ownContext else { return }
        context.eventLoop.preconditionInEventLoop()
        enqueue(plaintext, promise: nil, context: context)
        flush(context: context)
    }

    private func enqueue(_ bytes: ByteBuffer, promise: EventLoopPromise<Void>?, context: ChannelHandlerContext) {
        switch machine.write() {
        case .fail:
            promise?.fail(ChannelError.ioOnClosedChannel)
        case .buffer, .encrypt:
            if pendingPlaintext == nil {
                pendingPlaintext = bytes
            } else {
                var copy = bytes
                pendingPlaintext!.writeBuffer(&copy)
            }
            if let promise { pendingPromises.append(promise) }
            if machine.state == .active, pendingPlaintext!.readableBytes >= Self.eagerEncryptThreshold {
                encryptPending(context: context)
            }
        }
    }

    public func flush(context: ChannelHandlerContext) {
        switch machine.state {
        case .idle, .handshaking:
            flushRequested = true
        case .active:
            // One writeAndFlush for the records (not a write and then a separate flush).
            if pendingPlaintext != nil {
                encryptPending(context: context, flush: true)
            } else {
                writeOutbound(context: context, flush: true)
            }
        case .closing, .closed:
            context.flush()
        }
    }

    /// One SSL_write for everything queued since the last flush: few, full records.
    private func encryptPending(context: ChannelHandlerContext, flush: Bool = false) {
        guard let connection, let plaintext = pendingPlaintext else { return }
        pendingPlaintext = nil
        let promises = pendingPromises
        pendingPromises = []
        if let error = connection.write(plaintext) {
            promises.forEach { $0.fail(error) }
            fail(context: context, error: error)
            return
        }
        writeOutbound(context: context, flush: flush, completing: promises)
    }

    private func writeOutbound(
        context: ChannelHandlerContext, flush: Bool, completing promises: [EventLoopPromise<Void>] = []
    ) {
        guard let connection, let ciphertext = connection.takeOutbound() else {
            promises.forEach { $0.succeed() }
            if flush { context.flush() }
            return
        }
        var promise: EventLoopPromise<Void>? = nil
        if promises.count == 1 {
            promise = promises[0]
        } else if promises.count > 1 {
            let combined = context.eventLoop.makePromise(of: Void.self)
            combined.futureResult.assumeIsolated().whenComplete { result in
                promises.forEach { $0.completeWith(result) }
            }
            promise = combined
        }
        if flush {
            context.writeAndFlush(wrapOutboundOut(ciphertext), promise: promise)
        } else {
            context.write(wrapOutboundOut(ciphertext), promise: promise)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all else {
            context.close(mode: mode, promise: promise)
            return
        }
        switch machine.closeRequested() {
        case .closeNow:
            handshakeTimer?.cancel()
            failPendingWrites(ChannelError.ioOnClosedChannel)
            context.close(promise: promise)
        case .alreadyClosing:
            if let promise {
                if let closePromise {
                    closePromise.futureResult.cascade(to: promise)
                } else {
                    context.close(promise: promise)
                }
            }
        case .sendCloseNotify:
            encryptPending(context: context)
            connection?.shutdown()
            writeOutbound(context: context, flush: true)
            closePromise = promise ?? context.eventLoop.makePromise()
            // Honour the peer's close_notify if it comes soon; never wait forever for it.
            closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: settings.closeNotifyTimeout) { [self] in
                let promise = closePromise
                closePromise = nil
                context.close(promise: promise)
            }
            context.read()
        }
    }

    // MARK: failure

    private func fail(context: ChannelHandlerContext, error: TLSError) {
        let handshaking = machine.state == .handshaking || machine.state == .idle
        guard machine.failed() else { return }
        if handshaking { settings.handshakeFailed?(error) }
        handshakeTimer?.cancel()
        closeTimer?.cancel()
        // Send any alert OpenSSL produced, so the peer learns why.
        writeOutbound(context: context, flush: true)
        failPendingWrites(error)
        logger?.notice(
            "TLS connection failed",
            metadata: [
                "peer": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")",
                "reason": "\(error)",
            ])
        context.fireErrorCaught(error)
        let promise = closePromise
        closePromise = nil
        context.close(promise: promise)
    }

    private func failPendingWrites(_ error: Error) {
        pendingPlaintext = nil
        let promises = pendingPromises
        pendingPromises = []
        promises.forEach { $0.fail(error) }
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
