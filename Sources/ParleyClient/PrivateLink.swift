import NIOConcurrencyHelpers
import NIOCore
import ParleyCrypto
import NIOPosix
import ParleyProtocol
import ParleyTLS

/// Why a direct private connection could not be opened, or ended.
public enum PrivateLinkError: Error, Sendable, Equatable, CustomStringConvertible {
    case connectFailed(String)
    /// TLS failed: no certificate, a key that does not match the pin, not TLS at all...
    case tls(TLSError)
    /// The peer closed before accepting the session (e.g. it refused our certificate or session id).
    case refused
    case timedOut

    public var description: String {
        switch self {
        case .connectFailed(let why): "could not connect: \(why)"
        case .tls(let error): error.description
        case .refused: "the peer refused the connection"
        case .timedOut: "the peer did not answer in time"
        }
    }
}

/// What an open private link reports, in order; `.closed` is last.
public enum PrivateLinkEvent: Sendable, Equatable {
    case text(String)
    /// The peer announced why it is closing.
    case bye(reason: String)
    /// The connection ended; nil error for an orderly close (close_notify).
    case closed(PrivateLinkError?)
}

/// What the accepting side expects of the connecting one, as relayed by the server.
public struct PrivatePeerExpectation: Sendable, Hashable {
    /// SHA-256 of the peer's SubjectPublicKeyInfo: the only key accepted.
    public var fingerprint: [UInt8]
    /// The session id the connecting side must present first (accepted once).
    public var session: String

    public init(fingerprint: [UInt8], session: String) {
        self.fingerprint = fingerprint
        self.session = session
    }
}

/// One open, mutually authenticated, direct TLS 1.3 connection to the other user.
public final class PrivateLink: Sendable {
    /// SHA-256 of the peer's public key (as verified against the pin).
    public let peerFingerprint: [UInt8]
    /// Six digits from the TLS exporter: equal on both ends exactly when both ends share one TLS session.
    public let safetyCode: String
    /// Frames from the peer; finishes after `.closed`.
    public let events: AsyncStream<PrivateLinkEvent>
    private let channel: Channel

    init(channel: Channel, info: TLSSessionInfo, events: AsyncStream<PrivateLinkEvent>) {
        self.channel = channel
        self.peerFingerprint = info.peerFingerprint ?? []
        self.safetyCode = Self.safetyCode(from: info.exportedSecret ?? [])
        self.events = events
    }

    /// First 8 exporter bytes as a big-endian integer, modulo 10^6, shown as "123 456".
    /// The exporter is bound to the handshake's key exchange, so a machine in the middle (two TLS
    /// sessions) would show different codes on the two screens.
    public static func safetyCode(from secret: [UInt8]) -> String {
        guard secret.count >= 8 else { return "------" }
        let value = secret.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let digits = String(value % 1_000_000)
        let padded = String(repeating: "0", count: 6 - digits.count) + digits
        return padded.prefix(3) + " " + padded.suffix(3)
    }

    /// Sends one private message.
    public func send(_ text: String) async throws {
        try await channel.writeAndFlush(PrivateFrame.text(text).buffer(allocator: channel.allocator))
    }

    /// Says why (if given), then closes with close_notify.
    public func close(reason: String?) async {
        if let reason {
            try? await channel.writeAndFlush(PrivateFrame.bye(reason: reason).buffer(allocator: channel.allocator))
        }
        try? await channel.close()
    }

    /// Opens the connecting side: TCP to `host:port`, TLS 1.3 presenting `identity` and pinning
    /// `expecting.fingerprint`, then the session id; open only once the peer answers `welcome`
    /// (in TLS 1.3 our handshake finishes before the peer has checked our certificate).
    public static func connect(
        host: String, port: Int, identity: TLSIdentity, expecting: PrivatePeerExpectation,
        timeout: TimeAmount = .seconds(10), group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(PrivateLinkError) -> PrivateLink {
        let context: TLSContext
        do { context = try TLSContext(role: .peer(identity: identity, accepting: false)) } catch { throw .tls(error) }
        let loop = group.next()
        let opened = loop.makePromise(of: PrivateLink.self)
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(
                            TLSHandler(context: context, pinnedFingerprint: expecting.fingerprint, handshakeTimeout: timeout))
                        try sync.addHandler(ByteToMessageHandler(FrameDecoder()))
                        try sync.addHandler(PrivateLinkHandler(role: .connecting(session: expecting.session, opened: opened)))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            opened.fail(PrivateLinkError.connectFailed("\(error)"))
            throw .connectFailed("\(host):\(port): \(error)")
        }
        let timer = loop.scheduleTask(in: timeout) {
            opened.fail(PrivateLinkError.timedOut)
            channel.close(promise: nil)
        }
        defer { timer.cancel() }
        do {
            return try await opened.futureResult.get()
        } catch let error as PrivateLinkError {
            throw error
        } catch {
            throw .refused
        }
    }
}

/// The accepting side's "use once" rule: the first correct session id wins, every later
/// attempt (a replay, a second connection) is refused. Compared in constant time.
final class SessionGate: Sendable {
    private let state = NIOLockedValueBox<(expected: String?, spent: Bool)>((nil, false))

    func expect(_ session: String) { state.withLockedValue { $0.expected = session } }

    func redeem(_ presented: String) -> Bool {
        state.withLockedValue { s in
            guard !s.spent, let expected = s.expected, ParleyCrypto.constantTimeEquals(Array(expected.utf8), Array(presented.utf8))
            else { return false }
            s.spent = true
            return true
        }
    }

}

/// The pipeline end of a private connection: the session-id exchange, then chat frames.
/// Touched only on its channel's event loop.
final class PrivateLinkHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    enum Role {
        case connecting(session: String, opened: EventLoopPromise<PrivateLink>)
        case accepting(gate: SessionGate, onOpen: @Sendable (PrivateLink) -> Void)
    }

    private let role: Role
    private var info: TLSSessionInfo?
    private var link: PrivateLink?
    private var failure: PrivateLinkError?
    private let events: AsyncStream<PrivateLinkEvent>
    private let continuation: AsyncStream<PrivateLinkEvent>.Continuation

    private let openTimeout: TimeAmount

    init(role: Role, openTimeout: TimeAmount = .seconds(10)) {
        self.role = role
        self.openTimeout = openTimeout
        (events, continuation) = AsyncStream.makeStream(of: PrivateLinkEvent.self, bufferingPolicy: .bufferingOldest(1024))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A connection that has not opened the session in time (after TLS, or stuck before it) goes.
        context.eventLoop.assumeIsolated().scheduleTask(in: openTimeout) { [self] in
            if link == nil { context.close(promise: nil) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted(let info)? = event as? TLSEvent else { return }
        self.info = info
        if case .connecting(let session, _) = role {
            context.writeAndFlush(NIOAny(PrivateFrame.open(session: session).buffer(allocator: context.channel.allocator)), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = unwrapInboundIn(data), let frame = try? PrivateFrame.decode(from: line) else {
            if link == nil { context.close(promise: nil) }  // garbage before the session opened
            return
        }
        guard let link else { return opening(context: context, frame: frame) }
        switch frame {
        case .text(let text):
            // A peer flooding faster than we show is cut off rather than buffered without bound.
            if case .dropped = continuation.yield(.text(text)) { context.close(promise: nil) }
        case .bye(let reason): continuation.yield(.bye(reason: reason))
        case .open, .welcome: _ = link  // out of place after opening: ignored
        }
    }

    private func opening(context: ChannelHandlerContext, frame: PrivateFrame) {
        guard let info else { return context.close(promise: nil) }
        switch (role, frame) {
        case (.connecting(_, let opened), .welcome):
            let link = PrivateLink(channel: context.channel, info: info, events: events)
            self.link = link
            opened.succeed(link)
        case (.accepting(let gate, let onOpen), .open(let session)) where gate.redeem(session):
            let link = PrivateLink(channel: context.channel, info: info, events: events)
            self.link = link
            context.writeAndFlush(NIOAny(PrivateFrame.welcome.buffer(allocator: context.channel.allocator)), promise: nil)
            onOpen(link)
        default:
            // Wrong or spent session id, or a frame out of order: drop it without telling the user.
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if failure == nil { failure = (error as? TLSError).map(PrivateLinkError.tls) ?? .connectFailed("\(error)") }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if link != nil {
            continuation.yield(.closed(failure))
        } else if case .connecting(_, let opened) = role {
            opened.fail(failure ?? .refused)
        }
        continuation.finish()
        context.fireChannelInactive()
    }
}
