import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyTLS
import ParleyTestSupport

/// What one side of a test connection saw.
final class Observations: @unchecked Sendable {
    private let lock = NIOLock()
    private var _bytes: [UInt8] = []
    private var _events: [TLSEvent] = []
    private var _errors: [Error] = []
    private var _active = 0
    private var _accepted = 0
    private var _channels: [Channel] = []
    var channels: [Channel] { lock.withLock { _channels } }
    func opened(_ channel: Channel) { lock.withLock { _channels.append(channel) } }

    var bytes: [UInt8] { lock.withLock { _bytes } }
    var events: [TLSEvent] { lock.withLock { _events } }
    var errors: [Error] { lock.withLock { _errors } }
    var tlsErrors: [TLSError] { errors.compactMap { $0 as? TLSError } }
    var activeChannels: Int { lock.withLock { _active } }
    var acceptedChannels: Int { lock.withLock { _accepted } }

    func append(_ buffer: ByteBuffer) { lock.withLock { _bytes += buffer.readableBytesView } }
    func record(_ event: TLSEvent) { lock.withLock { _events.append(event) } }
    func record(_ error: Error) { lock.withLock { _errors.append(error) } }
    func opened() { lock.withLock { _active += 1; _accepted += 1 } }
    func closed() { lock.withLock { _active -= 1 } }

    var handshakeCompleted: Bool {
        events.contains { if case .handshakeCompleted = $0 { return true } else { return false } }
    }
}

/// Records everything above the TLS handler; optionally echoes what it reads.
final class RecordingHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let observations: Observations
    let echo: Bool

    init(observations: Observations, echo: Bool) {
        self.observations = observations
        self.echo = echo
    }

    func channelActive(context: ChannelHandlerContext) {
        observations.opened()
        observations.opened(context.channel)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        observations.closed()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        observations.append(buffer)
        if echo { context.write(data, promise: nil) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if echo { context.flush() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSEvent { observations.record(event) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        observations.record(error)
    }
}

/// A TLS echo server on 127.0.0.1, port 0.
struct EchoServer {
    let channel: Channel
    let seen: Observations
    var port: Int { channel.localAddress!.port! }

    static func start(context: TLSContext, handshakeTimeout: TimeAmount = .seconds(5)) async throws -> EchoServer {
        let observations = Observations()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        TLSHandler(context: context, handshakeTimeout: handshakeTimeout))
                    try channel.pipeline.syncOperations.addHandler(
                        RecordingHandler(observations: observations, echo: true))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return EchoServer(channel: channel, seen: observations)
    }
}

/// Connects a TLS client whose events land in the returned observations.
func connectClient(
    port: Int, context: TLSContext, hostname: String = "localhost"
) async throws -> (Channel, Observations) {
    let observations = Observations()
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context, serverHostname: hostname))
                try channel.pipeline.syncOperations.addHandler(RecordingHandler(observations: observations, echo: false))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    return (channel, observations)
}

/// A plain TCP client, for speaking not-TLS or half a handshake.
func connectRaw(port: Int) async throws -> (Channel, Observations) {
    let observations = Observations()
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RecordingHandler(observations: observations, echo: false))
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
    return (channel, observations)
}

