import NIOConcurrencyHelpers
import NIOCore
import ParleyCrypto
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// The accepting side's "use once" rule: the first correct link id wins, every later
/// attempt (a replay, a second connection) is refused. Compared in constant time.
final class LinkIDGate: Sendable {
    private let state = NIOLockedValueBox<(expected: String?, spent: Bool)>((nil, false))

    func expect(_ linkID: String) { state.withLockedValue { $0.expected = linkID } }

    func redeem(_ presented: String) -> Bool {
        state.withLockedValue { s in
            guard !s.spent, let expected = s.expected, ParleyCrypto.constantTimeEquals(Array(expected.utf8), Array(presented.utf8))
            else { return false }
            s.spent = true
            return true
        }
    }
}

/// The pipeline end of a private connection: the link id, the safety-code exchange
/// (commit, nonce, reveal; see `SafetyCode`), then chat frames. Nothing reaches the user, no text
/// and no code, before the exchange has completed. Touched only on its channel's event loop.
final class PrivateLinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    enum Role {
        case connecting(linkID: String, opened: EventLoopPromise<PrivateLink>)
        /// `onAbort` hears of failures after the session id was redeemed (earlier ones stay silent).
        case accepting(gate: LinkIDGate, onOpen: @Sendable (PrivateLink) -> Void, onAbort: @Sendable (PrivateLinkError) -> Void)
    }

    /// Where the opening stands; each frame is accepted only in its own stage.
    private enum Stage {
        case handshaking
        /// Connecting: `open` and `commit` sent.
        case awaitingNonce(mine: SafetyValue)
        /// Connecting: `reveal` sent; the code is known but not shown until `welcome`.
        case awaitingWelcome(code: String)
        /// Accepting: TLS done, no session id yet.
        case awaitingOpen
        /// Accepting: the session id was redeemed.
        case awaitingCommit
        /// Accepting: `nonce` sent.
        case awaitingReveal(commitment: SafetyValue, mine: SafetyValue)
        case open(PrivateLink)
        /// Failed or reported; everything else is ignored.
        case finished
    }

    private let role: Role
    private let openTimeout: TimeAmount
    private var stage = Stage.handshaking
    private var exporter: [UInt8] = []
    private var peerFingerprint: [UInt8] = []
    private var failure: PrivateLinkError?
    private var timer: Scheduled<Void>?
    private let events: AsyncStream<PrivateLinkEvent>
    private let continuation: AsyncStream<PrivateLinkEvent>.Continuation

    init(role: Role, openTimeout: TimeAmount = .seconds(10)) {
        self.role = role
        self.openTimeout = openTimeout
        (events, continuation) = AsyncStream.makeStream(of: PrivateLinkEvent.self, bufferingPolicy: .bufferingOldest(1024))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // One deadline for TLS, the session id and the exchange: a peer that stalls anywhere
        // (e.g. never reveals) cannot hold the session, or the spent session id, open.
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: openTimeout) { [self] in
            switch stage {
            case .handshaking, .awaitingOpen: fail(context: context, .timedOut, tellPeer: false)
            case .awaitingNonce, .awaitingWelcome, .awaitingCommit, .awaitingReveal:
                fail(context: context, .exchangeTimedOut, tellPeer: true)
            case .open, .finished: break
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted(let info)? = event as? TLSEvent, case .handshaking = stage else { return }
        // Without the exporter the code would not be bound to this TLS session: fail closed.
        guard let secret = info.exportedSecret, secret.count == SafetyCode.exporterByteCount else {
            return fail(context: context, .protocolViolation("no TLS exporter secret"), tellPeer: false)
        }
        exporter = secret
        peerFingerprint = info.peerFingerprint ?? []
        switch role {
        case .connecting(let linkID, _):
            let mine = SafetyCode.freshNonce()
            stage = .awaitingNonce(mine: mine)
            send(context, .open(linkID: linkID), .commit(SafetyCode.commitment(to: mine, exporter: exporter)))
        case .accepting:
            stage = .awaitingOpen
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame: PrivateFrame
        do throws(ProtocolError) {
            guard case .line(let line) = unwrapInboundIn(data) else {
                throw ProtocolError(.frameTooLarge, "a frame over \(Limits.maxFrameBytes) bytes")
            }
            frame = try PrivateFrame.decode(from: line)
        } catch {
            // Once open, a bad line is ignored as before; during the opening it ends the attempt.
            if case .open = stage { return }
            return violation(context, "malformed frame (\(error.message))")
        }
        if case .open = stage { return deliver(context, frame) }
        opening(context, frame)
    }

    private func deliver(_ context: ChannelHandlerContext, _ frame: PrivateFrame) {
        switch frame {
        case .text(let text):
            // A peer flooding faster than we show is cut off rather than buffered without bound.
            if case .dropped = continuation.yield(.text(text)) { context.close(promise: nil) }
        case .bye(let reason): continuation.yield(.bye(reason: reason))
        case .open, .commit, .nonce, .reveal, .welcome: break  // out of place after opening: ignored
        }
    }

    private func opening(_ context: ChannelHandlerContext, _ frame: PrivateFrame) {
        switch (stage, frame) {
        case (.open, _), (.finished, _):
            return
        case (.handshaking, _):
            fail(context: context, .protocolViolation("a frame before the TLS handshake finished"), tellPeer: false)
        case (.awaitingOpen, .open(let linkID)):
            guard case .accepting(let gate, _, _) = role, gate.redeem(linkID) else {
                return fail(context: context, .refused, tellPeer: false)  // wrong or spent: silently
            }
            stage = .awaitingCommit
        case (.awaitingOpen, _):
            // Wrong or spent session id, or a frame out of order: dropped without telling anyone.
            fail(context: context, .refused, tellPeer: false)
        case (.awaitingCommit, .commit(let commitment)):
            let mine = SafetyCode.freshNonce()
            stage = .awaitingReveal(commitment: commitment, mine: mine)
            send(context, .nonce(mine))
        case (.awaitingReveal(let commitment, let mine), .reveal(let theirs)):
            guard SafetyCode.opens(commitment, with: theirs, exporter: exporter) else {
                return fail(context: context, .commitmentMismatch, tellPeer: true)
            }
            let link = open(context, code: SafetyCode.code(exporter: exporter, connecting: theirs, accepting: mine))
            send(context, .welcome)
            if case .accepting(_, let onOpen, _) = role { onOpen(link) }
        case (.awaitingNonce(let mine), .nonce(let theirs)):
            stage = .awaitingWelcome(code: SafetyCode.code(exporter: exporter, connecting: mine, accepting: theirs))
            send(context, .reveal(mine))
        case (.awaitingWelcome(let code), .welcome):
            let link = open(context, code: code)
            if case .connecting(_, let opened) = role { opened.succeed(link) }
        case (_, .bye(let reason)):
            fail(context: context, .abortedByPeer(reason: reason), tellPeer: false)
        default:
            violation(context, "unexpected '\(frame.typeName)' frame before the safety-code exchange finished")
        }
    }

    private func violation(_ context: ChannelHandlerContext, _ what: String) {
        switch stage {
        case .handshaking, .awaitingOpen: fail(context: context, .refused, tellPeer: false)
        default: fail(context: context, .protocolViolation(what), tellPeer: true)
        }
    }

    private func open(_ context: ChannelHandlerContext, code: String) -> PrivateLink {
        timer?.cancel()
        let link = PrivateLink(channel: context.channel, peerFingerprint: peerFingerprint, safetyCode: code, events: events)
        stage = .open(link)
        return link
    }

    /// Ends an opening attempt once: reports `error` to our side and, if asked, tells the peer
    /// why in a `bye` before closing.
    private func fail(context: ChannelHandlerContext, _ error: PrivateLinkError, tellPeer: Bool) {
        let redeemed = isPastLinkID
        switch stage {
        case .open, .finished: return
        default: stage = .finished
        }
        report(error, redeemed: redeemed)
        guard tellPeer else { return context.close(promise: nil) }
        send(context, .bye(reason: error.description)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func report(_ error: PrivateLinkError, redeemed: Bool) {
        switch role {
        case .connecting(_, let opened): opened.fail(error)
        case .accepting(_, _, let onAbort): if redeemed { onAbort(error) }
        }
    }

    /// Whether the accepting side has spent its session id on this connection (or the connecting
    /// side has heard back), so a failure from here on is worth telling the user about.
    private var isPastLinkID: Bool {
        switch stage {
        case .awaitingCommit, .awaitingReveal, .awaitingWelcome: true
        case .handshaking, .awaitingOpen, .awaitingNonce, .open, .finished: false
        }
    }

    @discardableResult
    private func send(_ context: ChannelHandlerContext, _ frames: PrivateFrame...) -> EventLoopFuture<Void> {
        var buffer = context.channel.allocator.buffer(capacity: 96 * frames.count)
        for frame in frames { frame.encode(to: &buffer) }
        return context.writeAndFlush(wrapOutboundOut(buffer))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if failure == nil { failure = (error as? TLSError).map(PrivateLinkError.tls) ?? .connectFailed("\(error)") }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        switch stage {
        case .open:
            continuation.yield(.closed(failure))
        case .finished:
            break
        default:
            // Closed by the peer (or the network) mid-opening. The connecting side cannot tell a
            // refused session id from a vanished peer until it has seen `nonce`.
            let error = failure ?? (isPastLinkID ? .closedDuringExchange : .refused)
            let redeemed = isPastLinkID
            stage = .finished
            report(error, redeemed: redeemed)
        }
        continuation.finish()
        context.fireChannelInactive()
    }
}
