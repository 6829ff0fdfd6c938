import NIOCore
import NIOPosix
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// Why a direct private connection could not be opened, or ended.
public enum PrivateLinkError: Error, Sendable, Equatable, CustomStringConvertible {
    case connectFailed(String)
    /// TLS failed: no certificate, a key that does not match the pin, not TLS at all...
    case tls(TLSError)
    /// The peer closed before accepting the session (e.g. it refused our certificate or session id).
    case refused
    /// TCP or TLS did not finish in time.
    case timedOut
    /// The revealed value does not open the commitment: someone is playing one end of the exchange.
    case commitmentMismatch
    /// The peer ended the session during the safety-code exchange and said why.
    case abortedByPeer(reason: String)
    /// A malformed or out-of-order frame during the safety-code exchange.
    case protocolViolation(String)
    /// The connection ended after the session id was accepted, before the exchange finished.
    case closedDuringExchange
    /// The safety-code exchange did not finish within the handshake timeout.
    case exchangeTimedOut

    /// A stable machine word for JSON output and logs.
    public var code: String {
        switch self {
        case .connectFailed: "connect_failed"
        case .tls: "tls"
        case .refused: "refused"
        case .timedOut: "timed_out"
        case .commitmentMismatch: "commitment_mismatch"
        case .abortedByPeer: "aborted_by_peer"
        case .protocolViolation: "protocol_violation"
        case .closedDuringExchange: "closed_during_exchange"
        case .exchangeTimedOut: "exchange_timed_out"
        }
    }

    /// Whether the session got as far as the safety-code exchange (so the user hears "aborted").
    public var isExchangeFailure: Bool {
        switch self {
        case .commitmentMismatch, .abortedByPeer, .protocolViolation, .closedDuringExchange, .exchangeTimedOut: true
        case .connectFailed, .tls, .refused, .timedOut: false
        }
    }

    public var description: String {
        switch self {
        case .connectFailed(let why): "could not connect: \(why)"
        case .tls(let error): error.description
        case .refused: "the peer refused the connection"
        case .timedOut: "the peer did not answer in time"
        case .commitmentMismatch: "safety-code commitment did not match (someone may be interfering)"
        case .abortedByPeer(let reason): reason
        case .protocolViolation(let what): "protocol violation: \(what)"
        case .closedDuringExchange: "the connection closed before the safety-code exchange finished"
        case .exchangeTimedOut: "the safety-code exchange did not finish in time"
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
    /// The private-link id (the wire's `session` field) the connecting side must present first
    /// (accepted once).
    public var linkID: String

    public init(fingerprint: [UInt8], linkID: String) {
        self.fingerprint = fingerprint
        self.linkID = linkID
    }
}

/// One open, mutually authenticated, direct TLS 1.3 connection to the other user, after the
/// safety-code exchange succeeded.
public final class PrivateLink: Sendable {
    /// SHA-256 of the peer's public key (as verified against the pin).
    public let peerFingerprint: [UInt8]
    /// Six digits from the TLS exporter and both random values (`SafetyCode.code`): equal on both
    /// ends when both ends share one TLS session and one exchange.
    public let safetyCode: String
    /// Frames from the peer; finishes after `.closed`.
    public let events: AsyncStream<PrivateLinkEvent>
    private let channel: Channel

    init(channel: Channel, peerFingerprint: [UInt8], safetyCode: String, events: AsyncStream<PrivateLinkEvent>) {
        self.channel = channel
        self.peerFingerprint = peerFingerprint
        self.safetyCode = safetyCode
        self.events = events
    }

    /// Sends one private message.
    public func send(_ text: String) async throws {
        try await channel.writeAndFlush(PrivateFrame.text(text).buffer(allocator: channel.allocator))
    }

    /// Queues one private message without waiting: messages queued one after another leave in
    /// that order, and a failed write shows up as the link closing.
    public func write(_ text: String) {
        channel.writeAndFlush(PrivateFrame.text(text).buffer(allocator: channel.allocator), promise: nil)
    }

    /// Says why (if given), then closes with close_notify.
    public func close(reason: String?) async {
        try? await close(saying: reason).get()
    }

    /// Like `close(reason:)`; the future completes once the link is closed (never fails).
    @discardableResult
    public func close(saying reason: String?) -> EventLoopFuture<Void> {
        let channel = self.channel
        let said: EventLoopFuture<Void> = if let reason {
            channel.writeAndFlush(PrivateFrame.bye(reason: reason).buffer(allocator: channel.allocator)).recover { _ in }
        } else {
            channel.eventLoop.makeSucceededVoidFuture()
        }
        return said.flatMap { channel.close() }.recover { _ in }
    }

    /// Opens the connecting side: TCP to `host:port`, TLS 1.3 presenting `identity` and pinning
    /// `expecting.fingerprint`, then the session id and the safety-code exchange; open only once
    /// the peer answers `welcome` (in TLS 1.3 our handshake finishes before the peer has checked
    /// our certificate). Everything must finish within `timeout`.
    public static func connect(
        host: String, port: Int, identity: TLSIdentity, expecting: PrivatePeerExpectation,
        timeout: TimeAmount = .seconds(10), group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(PrivateLinkError) -> PrivateLink {
        let context: TLSContext
        do { context = try TLSContext(role: .peer(identity: identity, accepting: false)) } catch { throw .tls(error) }
        let loop = group.next()
        let opened = loop.makePromise(of: PrivateLink.self)
        do {
            // The channel stays reachable through the link; the handler's timer bounds the wait below.
            _ = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(
                            TLSHandler(context: context, pinnedFingerprint: expecting.fingerprint, handshakeTimeout: timeout))
                        try sync.addHandler(ByteToMessageHandler(FrameDecoder()))
                        try sync.addHandler(
                            PrivateLinkHandler(role: .connecting(linkID: expecting.linkID, opened: opened), openTimeout: timeout))
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            opened.fail(PrivateLinkError.connectFailed("\(error)"))
            throw .connectFailed("\(host):\(port): \(error)")
        }
        do {
            return try await opened.futureResult.get()
        } catch let error as PrivateLinkError {
            throw error
        } catch {
            throw .refused
        }
    }
}
