import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyClient
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// One end of a private connection that speaks real, pinned TLS 1.3 but sends whatever frames its
/// script says: a lying peer, or one leg of a relay in the middle.
final class ScriptedPeer: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame
    typealias OutboundOut = ByteBuffer

    enum Step {
        case handshake
        case frame(PrivateFrame)
    }

    /// Returns the frames to send back; runs on the event loop. Set before the channel exists.
    var script: (Step, _ exporter: [UInt8]) -> [PrivateFrame] = { _, _ in [] }
    private let state = NIOLockedValueBox<(received: [PrivateFrame], handshaken: Bool, closed: Bool)>(([], false, false))
    private let channelBox = NIOLockedValueBox<Channel?>(nil)

    var received: [PrivateFrame] { state.withLockedValue { $0.received } }
    var handshaken: Bool { state.withLockedValue { $0.handshaken } }
    var closed: Bool { state.withLockedValue { $0.closed } }

    /// Writes frames on this peer's channel from anywhere (a relay's other leg).
    func send(_ frames: [PrivateFrame]) {
        guard !frames.isEmpty, let channel = channelBox.withLockedValue({ $0 }) else { return }
        var buffer = channel.allocator.buffer(capacity: 256)
        for frame in frames { frame.encode(to: &buffer) }
        channel.writeAndFlush(buffer, promise: nil)
    }

    /// Writes raw bytes (a malformed frame) on this peer's channel.
    func sendRaw(_ text: String) {
        channelBox.withLockedValue { $0 }?.writeAndFlush(ByteBuffer(string: text), promise: nil)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        channelBox.withLockedValue { $0 = channel }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard case .handshakeCompleted(let info)? = event as? TLSEvent else { return }
        exporter = info.exportedSecret ?? []
        state.withLockedValue { $0.handshaken = true }
        send(script(.handshake, exporter))
    }

    private var exporter: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = unwrapInboundIn(data), let frame = try? PrivateFrame.decode(from: line) else { return }
        state.withLockedValue { $0.received.append(frame) }
        send(script(.frame(frame), exporter))
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.withLockedValue { $0.closed = true }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }

    /// Connects to `port` as the connecting side, presenting `identity` and pinning `pin`.
    func connect(port: Int, identity: TLSIdentity, pin: [UInt8]) async throws -> Channel {
        let context = try TLSContext(role: .peer(identity: identity, accepting: false))
        return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(TLSHandler(context: context, pinnedFingerprint: pin, handshakeTimeout: .seconds(3)))
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try sync.addHandler(self)
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    /// Listens on an ephemeral port as the accepting side (one connection); returns the server channel.
    func listen(identity: TLSIdentity, pin: [UInt8]) async throws -> Channel {
        let context = try TLSContext(role: .peer(identity: identity, accepting: true))
        return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let sync = child.pipeline.syncOperations
                    try sync.addHandler(TLSHandler(context: context, pinnedFingerprint: pin, handshakeTimeout: .seconds(3)))
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try sync.addHandler(self)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
    }
}

/// A real accepting side (`PrivateListener`, as `PrivateEdge` opens it) that records what it reports.
final class ListeningPeer: Sendable {
    let identity: TLSIdentity
    let listener: PrivateListener
    private let box: NIOLockedValueBox<(links: [PrivateLink], aborts: [PrivateLinkError])>

    init(name: String, expecting pin: [UInt8], linkID: String = "s-1", timeout: TimeAmount = .seconds(3)) async throws {
        identity = try CertificateFactory.make(commonName: name, kind: .peer, notAfter: 600)
        let box = NIOLockedValueBox<(links: [PrivateLink], aborts: [PrivateLinkError])>(([], []))
        listener = try await PrivateListener.open(
            identity: identity, host: "127.0.0.1", handshakeTimeout: timeout,
            onOpen: { link in box.withLockedValue { $0.links.append(link) } },
            onAbort: { error in box.withLockedValue { $0.aborts.append(error) } })
        listener.expect(PrivatePeerExpectation(fingerprint: pin, linkID: linkID))
        self.box = box
    }

    var links: [PrivateLink] { box.withLockedValue { $0.links } }
    var aborts: [PrivateLinkError] { box.withLockedValue { $0.aborts } }
    var port: Int { listener.port }
}

func waitUntil(_ seconds: Double = 8, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}
