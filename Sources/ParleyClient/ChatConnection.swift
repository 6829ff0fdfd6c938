import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// The outcome of a `login` request that the server answered.
public enum LoginResult: Sendable, Hashable {
    /// Logged in as `username` (spelled as registered); `created` when this login registered it.
    case loggedIn(username: String, created: Bool)
    /// The server refused; `code` says why (e.g. `wrong_password`, `account_locked`).
    case refused(code: ErrorCode, message: String)
}

/// One TLS connection to a Parley server: request/reply with automatic ids, plus a stream of events.
///
/// Everything except replies to this connection's requests (and the initial `hello`) arrives on
/// `events`, in order. The stream is bounded; if it fills up the connection is closed rather than
/// silently dropping anything. It finishes when the connection closes.
public final class ChatConnection: Sendable {
    /// Protocol version announced by the server in `hello`.
    public let serverVersion: Int64
    /// Server description from `hello`, e.g. "parley-server 0.1".
    public let serverDescription: String
    /// Messages that are not replies to our requests: `message`, `broadcast`, `presence`, `loggedout`, ...
    public let events: AsyncStream<ServerMessage>

    private let channel: Channel
    private let handler: ConnectionHandler

    private init(channel: Channel, handler: ConnectionHandler, events: AsyncStream<ServerMessage>, hello: (Int64, String)) {
        self.channel = channel
        self.handler = handler
        self.events = events
        self.serverVersion = hello.0
        self.serverDescription = hello.1
    }

    /// Connects, runs the TLS handshake (verifying the certificate against `serverHostname`), and
    /// waits for the server's `hello`. Throws `ClientError`; certificate problems fail closed as
    /// `.tls(.certificateVerificationFailed)`.
    public static func connect(
        host: String,
        port: Int,
        tlsContext: TLSContext,
        serverHostname: String?,
        eventBufferLimit: Int = 4096,
        helloTimeout: TimeAmount = .seconds(15),
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> ChatConnection {
        let eventLoop = group.next()
        let (events, continuation) = AsyncStream.makeStream(
            of: ServerMessage.self, bufferingPolicy: .bufferingOldest(eventBufferLimit))
        let handler = ConnectionHandler(eventLoop: eventLoop, events: continuation, helloTimeout: helloTimeout)
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: eventLoop)
                .connectTimeout(.seconds(10))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(PlainRefusalHandler())
                        try sync.addHandler(TLSHandler(context: tlsContext, serverHostname: serverHostname))
                        try sync.addHandler(ByteToMessageHandler(FrameDecoder()))
                        try sync.addHandler(handler)
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            continuation.finish()
            throw ClientError.connectFailed("\(host):\(port): \(Self.describeConnectError(error))")
        }
        let hello: (version: Int64, server: String)
        do {
            hello = try await handler.hello.futureResult.get()
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.protocolViolation(String(describing: error))
        }
        // A newer server is fine (login names the version we speak and the server decides);
        // an older one cannot understand us.
        if hello.version < Limits.protocolVersion {
            try? await channel.close()
            throw ClientError.unsupportedVersion(server: hello.version)
        }
        return ChatConnection(channel: channel, handler: handler, events: events, hello: hello)
    }

    /// Sends a request and waits for the reply with the same id. Throws `ClientError` if the
    /// connection closes first, or `.timedOut` after `timeout`.
    public func send(_ request: Request, timeout: Duration? = nil) async throws -> Reply {
        let handler = self.handler
        let eventLoop = channel.eventLoop
        let future = eventLoop.flatSubmit { handler.send(request, expectReply: true, on: eventLoop) }
        if let timeout {
            let nanos = Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
            let timer = eventLoop.scheduleTask(in: .nanoseconds(nanos)) {}
            let raced = eventLoop.makePromise(of: Reply?.self)
            future.cascade(to: raced)
            timer.futureResult.whenSuccess { raced.fail(ClientError.timedOut) }
            defer { timer.cancel() }
            return try await Self.unwrap(raced.futureResult)
        }
        return try await Self.unwrap(future)
    }

    /// Sends a request that has no reply (`ack`, `active`).
    public func sendWithoutReply(_ request: Request) async throws {
        let handler = self.handler
        let eventLoop = channel.eventLoop
        do {
            _ = try await eventLoop.flatSubmit { handler.send(request, expectReply: false, on: eventLoop) }.get()
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.connectionClosed
        }
    }

    /// Logs in (registering the account if the name is new and registration is open).
    public func login(username: String, password: String, timeout: Duration? = .seconds(30)) async throws -> LoginResult {
        let reply = try await send(.login(username: username, password: password), timeout: timeout)
        switch reply.outcome {
        case .ok(.login(let name, let created)): return .loggedIn(username: name, created: created)
        case .ok: return .loggedIn(username: username, created: false)
        case .error(let code, let message): return .refused(code: code, message: message)
        }
    }

    /// The local IP address of this connection (where a private-session listener binds).
    public var localHost: String? { channel.localAddress?.ipAddress }

    /// Closes the connection (sending TLS close_notify). Safe to call more than once.
    public func close() async {
        let handler = self.handler
        let eventLoop = channel.eventLoop
        try? await eventLoop.flatSubmit { handler.close(on: eventLoop) }.get()
    }

    /// Waits until the connection is closed; returns the failure that closed it, or nil for a plain close.
    public func waitUntilClosed() async -> ClientError? {
        (try? await handler.closed.futureResult.get()) ?? nil
    }

    // NIO's connect errors list every address tried; people want the reason, e.g. "Connection refused".
    static func describeConnectError(_ error: Error) -> String {
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return describeConnectError(first.error)
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        if error is ChannelError { return "timed out" }
        return String(describing: error)
    }

    private static func unwrap(_ future: EventLoopFuture<Reply?>) async throws -> Reply {
        do {
            guard let reply = try await future.get() else { throw ClientError.protocolViolation("missing reply") }
            return reply
        } catch let error as ClientError {
            throw error
        } catch {
            throw ClientError.connectionClosed
        }
    }
}
