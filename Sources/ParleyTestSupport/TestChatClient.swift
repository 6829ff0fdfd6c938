import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// A minimal protocol client for server tests: raw requests in, decoded server messages out.
public final class TestChatClient: Sendable {
    private let channel: Channel
    private let inbox: Inbox
    private let nextID = NIOLockedValueBox<Int64>(1)

    final class Inbox: @unchecked Sendable {
        // Guarded by `lock`.
        private let lock = NIOLock()
        private var messages: [ServerMessage] = []
        private var taken: Set<Int> = []
        private var _closed = false
        private var _errors: [Error] = []
        private var _peerFingerprint: [UInt8]?

        func append(_ message: ServerMessage) { lock.withLock { messages.append(message) } }
        func markClosed() { lock.withLock { _closed = true } }
        func record(_ error: Error) { lock.withLock { _errors.append(error) } }
        var closed: Bool { lock.withLock { _closed } }
        var errors: [Error] { lock.withLock { _errors } }
        var peerFingerprint: [UInt8]? {
            get { lock.withLock { _peerFingerprint } }
            set { lock.withLock { _peerFingerprint = newValue } }
        }
        var all: [ServerMessage] { lock.withLock { messages } }

        func take(where predicate: (ServerMessage) -> Bool) -> ServerMessage? {
            lock.withLock {
                for (index, message) in messages.enumerated() where !taken.contains(index) && predicate(message) {
                    taken.insert(index)
                    return message
                }
                return nil
            }
        }
    }

    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = Frame
        let inbox: Inbox
        init(inbox: Inbox) { self.inbox = inbox }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .line(let line) = unwrapInboundIn(data), let message = try? ServerMessage.decode(from: line) {
                inbox.append(message)
            }
        }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .handshakeCompleted(let info)? = event as? TLSEvent { inbox.peerFingerprint = info.peerFingerprint }
            context.fireUserInboundEventTriggered(event)
        }
        func channelInactive(context: ChannelHandlerContext) {
            inbox.markClosed()
            context.fireChannelInactive()
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            inbox.record(error)
            context.close(promise: nil)
        }
    }

    private init(channel: Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects over TLS and waits for the server's hello. Tests that run many clients pass their
    /// own `group`, so their load does not delay the clients of tests running beside them; tests
    /// that stand for another host pass a `sourceAddress` such as 127.0.0.2 (all of 127/8 is local).
    public static func connect(
        port: Int, caPath: String, host: String = "localhost",
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        sourceAddress: String? = nil
    ) async throws -> TestChatClient {
        let context = try TLSContext(role: .client(trustedCAPath: caPath))
        let inbox = Inbox()
        var bootstrap = ClientBootstrap(group: group)
        if let sourceAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: sourceAddress, port: 0)) }
        let channel = try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: context, serverHostname: host))
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(Collector(inbox: inbox))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let client = TestChatClient(channel: channel, inbox: inbox)
        guard await client.next(timeout: 10, where: { if case .hello = $0 { true } else { false } }) != nil else {
            throw TestClientError.noHello
        }
        return client
    }

    /// Errors from the test client itself.
    public enum TestClientError: Error { case noHello, noReply(String) }

    /// Sends a request with a fresh id and waits for the reply carrying it.
    @discardableResult
    public func request(_ request: Request, timeout: Double = 10) async throws -> Reply {
        let id = nextID.withLockedValue { value -> Int64 in
            defer { value += 1 }
            return value
        }
        try await send(request, id: id)
        let reply = await next(timeout: timeout) { message in
            if case .reply(let reply) = message { return reply.id == id }
            return false
        }
        guard case .reply(let r)? = reply else { throw TestClientError.noReply("\(request.typeName) #\(id)") }
        return r
    }

    /// Sends without waiting.
    public func send(_ request: Request, id: Int64? = nil) async throws {
        var buffer = channel.allocator.buffer(capacity: 128)
        request.encode(id: id, into: &buffer)
        try await channel.writeAndFlush(buffer)
    }

    /// Sends every request, each with its id, in one write: the server reads them pipelined.
    public func sendPipelined(_ requests: [(id: Int64, request: Request)]) async throws {
        var buffer = channel.allocator.buffer(capacity: 64 * requests.count)
        for (id, request) in requests { request.encode(id: id, into: &buffer) }
        try await channel.writeAndFlush(buffer)
    }

    /// Sends bytes as they are (malformed frames).
    public func sendRaw(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Logs in and returns the reply.
    @discardableResult
    public func login(_ username: String, _ password: String) async throws -> Reply {
        try await request(.login(username: username, password: password))
    }

    /// The first not-yet-taken message matching `predicate`, waiting up to `timeout` seconds; nil
    /// at once when the connection has closed without one (nothing more can arrive).
    public func next(timeout: Double = 5, where predicate: @escaping (ServerMessage) -> Bool) async -> ServerMessage? {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while true {
            // Closed is read first: every message read before the close is in the inbox by then.
            let closed = inbox.closed
            if let message = inbox.take(where: predicate) { return message }
            if closed || ContinuousClock.now >= deadline { return nil }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Everything received so far, taken or not.
    public var received: [ServerMessage] { inbox.all }

    /// SHA-256 of the server's public key as this connection's handshake saw it.
    public var serverFingerprint: [UInt8]? { inbox.peerFingerprint }

    /// Whether the server closed the connection.
    public var isClosed: Bool { inbox.closed }

    /// Waits up to `timeout` seconds for the connection to close.
    public func waitForClose(timeout: Double = 5) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while !inbox.closed && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
        return inbox.closed
    }

    /// Stops reading from the socket (a client that hangs): the server's writes back up.
    public func stopReading() async {
        try? await channel.setOption(.autoRead, value: false).get()
    }

    /// Closes from this side (with close_notify).
    public func close() async {
        try? await channel.close()
    }

    /// Drops the TCP connection without close_notify (a crashed client).
    public func abort() async {
        try? await channel.pipeline.context(handlerType: TLSHandler.self).flatMap { context in
            context.close(promise: nil)
            return context.eventLoop.makeSucceededVoidFuture()
        }.get()
    }
}
