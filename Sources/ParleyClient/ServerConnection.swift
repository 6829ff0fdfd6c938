import NIOCore
import NIOPosix
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// The interactive client's TLS connection to the server, after `hello`: every frame in wire
/// order on one inbound stream (replies and events alike), requests written on one outbound
/// writer. `ChatClient` matches replies to requests itself, so requests can be in flight together.
public final class ServerConnection: Sendable {
    /// Protocol version announced by the server in `hello`.
    public let serverVersion: Int64
    /// Server description from `hello`, e.g. "parley-server 0.1".
    public let serverDescription: String
    let channel: NIOAsyncChannel<ServerMessage, ByteBuffer>

    private init(channel: NIOAsyncChannel<ServerMessage, ByteBuffer>, hello: (version: Int64, server: String)) {
        self.channel = channel
        self.serverVersion = hello.version
        self.serverDescription = hello.server
    }

    /// The local IP address of this connection (where a private-session listener binds).
    public var localHost: String? { channel.channel.localAddress?.ipAddress }

    /// Connects, runs the TLS handshake (verifying the certificate against `serverHostname`) and
    /// waits for `hello`. Throws `ClientError`; certificate problems fail closed as
    /// `.tls(.certificateVerificationFailed)`.
    public static func connect(
        host: String, port: Int, tlsContext: TLSContext, serverHostname: String?,
        helloTimeout: TimeAmount = .seconds(15), group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws(ClientError) -> ServerConnection {
        let eventLoop = group.next()
        let hello = eventLoop.makePromise(of: (version: Int64, server: String).self)
        let channel: NIOAsyncChannel<ServerMessage, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(.seconds(10))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(PlainRefusalHandler())
                        try sync.addHandler(TLSHandler(context: tlsContext, serverHostname: serverHostname))
                        try sync.addHandler(ByteToMessageHandler(FrameDecoder()))
                        try sync.addHandler(ServerFrameDecoder())
                        try sync.addHandler(HelloHandler(hello: hello, timeout: helloTimeout))
                        return try NIOAsyncChannel(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(inboundType: ServerMessage.self, outboundType: ByteBuffer.self))
                    }
                }
        } catch {
            hello.fail(ClientError.connectionClosed)
            throw .connectFailed("\(host):\(port): \(ChatConnection.describeConnectError(error))")
        }
        let greeting: (version: Int64, server: String)
        do {
            greeting = try await hello.futureResult.get()
        } catch {
            try? await channel.channel.close()
            throw error as? ClientError ?? .protocolViolation(String(describing: error))
        }
        // A newer server is fine (login names the version we speak and the server decides);
        // an older one cannot understand us.
        if greeting.version < Limits.protocolVersion {
            try? await channel.channel.close()
            throw .unsupportedVersion(server: greeting.version)
        }
        return ServerConnection(channel: channel, hello: greeting)
    }

    /// The error an inbound stream ended with, as the client reports it; nil for a plain close.
    static func clientError(for error: Error) -> ClientError? {
        switch error {
        case let error as ClientError: error
        // The server closing right after `loggedout` without close_notify is just a close.
        case TLSError.uncleanShutdown: nil
        case let error as TLSError: .tls(error)
        default: .protocolViolation(String(describing: error))
        }
    }
}

/// Frames to server messages. Unknown event types are skipped (the protocol says so); an
/// unreadable or oversized frame becomes an `error` message the person sees.
final class ServerFrameDecoder: ChannelInboundHandler {
    typealias InboundIn = Frame
    typealias InboundOut = ServerMessage

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let message = ServerMessage.fromServer(unwrapInboundIn(data)) else { return }
        context.fireChannelRead(wrapInboundOut(message))
    }
}

extension ServerMessage {
    /// A frame from the server as every client reads it: nil for an event type this client does
    /// not know (newer servers may send some; the protocol says skip them), and an `error` message
    /// for an unreadable or oversized frame, so the person sees what went wrong.
    static func fromServer(_ frame: Frame) -> ServerMessage? {
        switch frame {
        case .tooLarge:
            return .error(code: .frameTooLarge, message: "the server sent a frame larger than the limit")
        case .line(let line):
            do {
                return try ServerMessage.decode(from: line)
            } catch {
                if error.code == .unknownType { return nil }
                return .error(code: .badFrame, message: "unreadable frame from the server: \(error.message)")
            }
        }
    }
}

/// Takes the server's first frame, which must be `hello`, then leaves the pipeline. Failures
/// before it (TLS, a timeout, another frame) fail `hello`; later ones reach the inbound stream.
/// Touched only on its channel's event loop.
final class HelloHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ServerMessage
    typealias InboundOut = ServerMessage

    private let hello: EventLoopPromise<(version: Int64, server: String)>
    private let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var settled = false

    init(hello: EventLoopPromise<(version: Int64, server: String)>, timeout: TimeAmount) {
        self.hello = hello
        self.timeout = timeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) { [self] in
            fail(context, .timedOut)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) { timer?.cancel() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !settled else { return context.fireChannelRead(data) }
        guard case .hello(let version, let server) = unwrapInboundIn(data) else {
            return fail(context, .protocolViolation("expected hello, got another frame first"))
        }
        settled = true
        timer?.cancel()
        hello.succeed((version, server))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !settled else { return context.fireErrorCaught(error) }
        fail(context, ServerConnection.clientError(for: error) ?? .connectionClosed)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !settled {
            settled = true
            hello.fail(ClientError.connectionClosed)
        }
        context.fireChannelInactive()
    }

    private func fail(_ context: ChannelHandlerContext, _ error: ClientError) {
        guard !settled else { return }
        settled = true
        timer?.cancel()
        hello.fail(error)
        context.close(promise: nil)
    }
}
