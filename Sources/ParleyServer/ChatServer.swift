import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import ParleyCrypto
import ParleyProtocol
import ParleyProtocolNIO
import ParleyStore
import ParleyTLS
import Prometheus

/// A running Parley server: one TLS listener, its event loops, the hub and the store.
public final class ChatServer: Sendable {
    /// The port actually bound (useful with port 0).
    public let port: Int
    /// The port the metrics listener bound, if it is on.
    public let metricsPort: Int?
    private let channel: Channel
    private let metricsChannel: Channel?
    private let group: MultiThreadedEventLoopGroup
    private let service: ChatService
    private let logger: Logger

    private init(port: Int, channel: Channel, metricsChannel: Channel?, group: MultiThreadedEventLoopGroup,
                 service: ChatService, logger: Logger) {
        self.port = port
        self.channel = channel
        self.metricsChannel = metricsChannel
        self.metricsPort = metricsChannel?.localAddress?.port
        self.group = group
        self.service = service
        self.logger = logger
    }

    /// Builds the TLS context (off the event loops), opens the store, and starts listening.
    /// Metrics go to `metricsRegistry` (the process's, when the binary bootstrapped `MetricsSystem`
    /// with it), or to a registry of this server's own when `metricsListen` is set and none is
    /// given; otherwise nothing is recorded.
    public static func start(
        configuration: ServerConfiguration,
        store: (any ChatStore)? = nil,
        logger: Logger = Logger(label: "parley.server"),
        metricsRegistry: PrometheusCollectorRegistry? = nil
    ) async throws -> ChatServer {
        let tls = try await Task.detached {
            try TLSContext(
                role: .server(
                    certificateChainPath: configuration.certificatePath,
                    privateKeyPath: configuration.privateKeyPath))
        }.value
        if configuration.hashParameters.ln < PasswordHasher.Parameters.production.ln {
            logger.warning(
                "PASSWORD HASH COST LOWERED to \(configuration.hashParameters): for tests and benchmarks only, never production")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoopThreads)
        let chatStore: any ChatStore
        do {
            if let store {
                chatStore = store
            } else {
                // On the server's own loops: no second, global event-loop group just for the store.
                chatStore = try await SQLiteStore.open(
                    path: configuration.databasePath, eventLoopGroup: group, logger: logger)
            }
            let closed = try await chatStore.closeOpenLogins(at: Date())
            if closed > 0 { logger.info("closed \(closed) sessions left open by an earlier stop") }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        let registry = metricsRegistry ?? (configuration.metricsListen != nil ? PrometheusCollectorRegistry() : nil)
        let metrics = registry.map { ServerMetrics(factory: Self.metricsFactory(registry: $0)) } ?? .disabled
        if registry != nil, let queued = try? await chatStore.pendingMessageTotal() {
            metrics.offlineQueued.set(queued)
        }
        let loops = Array(group.makeIterator())
        let hub = Hub(eventLoops: loops, minFlushInterval: configuration.minFlushInterval, metrics: metrics)
        let passwords = PasswordService(
            parameters: configuration.hashParameters, threads: configuration.hashingThreads,
            maxPending: configuration.maxPendingHashes, queueDepth: metrics.hasherQueue)
        let admission = LoginAdmission(
            maxWaitingPerName: configuration.maxLoginsWaitingPerName, backoff: configuration.addressBackoff,
            registrationsPerHour: configuration.limits.maxRegistrationsPerAddressPerHour)
        let service = ChatService(
            store: chatStore, passwords: passwords, hub: hub, configuration: configuration, logger: logger,
            admission: admission, metrics: metrics)
        let channel: Channel
        var metricsChannel: Channel?
        let tlsSettings = TLSHandler.Settings(
            context: tls, handshakeTimeout: configuration.handshakeTimeout, logger: logger,
            handshakeFailed: { metrics.handshakeFailed(.init($0)) })
        let limiter = service.connections
        do {
            if let address = configuration.metricsListen, let registry {
                metricsChannel = try await MetricsListener.start(at: address, group: group, registry: registry)
            }
            try await hub.startWakers()
            service.memory.start(on: loops[0])
            channel = try await ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 1024)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.writeBufferWaterMark, value: .init(low: 64 * 1024, high: 256 * 1024))
                // Chat frames are small, and NIO keeps each channel's last receive buffer for the
                // connection's life: a fixed 256 bytes (most reads are one small record) rather
                // than a buffer that grows to the largest read ever seen; 16 reads per wake-up
                // keep larger messages moving.
                .childChannelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 256))
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { child in
                    child.eventLoop.makeCompletedFuture {
                        let sync = child.pipeline.syncOperations
                        // Before any TLS work: a refused connection costs one small write.
                        switch limiter.admit(child.remoteAddress) {
                        case .refused(let code):
                            metrics.refused(code)
                            logger.debug("connection refused", metadata: [
                                "peer": "\(child.remoteAddress.map { "\($0)" } ?? "?")", "reason": "\(code.rawValue)"])
                            try sync.addHandler(RefusedConnectionHandler(code: code))
                            return
                        case .admitted(let key):
                            metrics.connectionsOpen.increment()
                            child.closeFuture.whenComplete { _ in
                                metrics.connectionsOpen.decrement()
                                if let key { limiter.release(key) }
                            }
                        }
                        try sync.addHandler(
                            TLSHandler(settings: tlsSettings))
                        try sync.addHandler(ClientHandler(service: service))
                    }
                }
                .bind(host: configuration.host, port: configuration.port).get()
        } catch {
            try? await metricsChannel?.close()
            service.memory.stop()
            try? await passwords.shutdown()
            try? await chatStore.close()
            try? await group.shutdownGracefully()
            throw error
        }
        let port = channel.localAddress?.port ?? configuration.port
        logger.info("listening", metadata: ["address": "\(configuration.host):\(port)", "tls": "1.3"])
        if let metricsChannel, let address = metricsChannel.localAddress, let ip = address.ipAddress, let bound = address.port {
            logger.info("metrics listening", metadata: ["address": "\(MetricsAddress(host: ip, port: bound))", "path": "/metrics"])
        }
        return ChatServer(port: port, channel: channel, metricsChannel: metricsChannel, group: group, service: service, logger: logger)
    }

    /// The Prometheus factory for a registry, with the flush-pass histogram's buckets.
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets[ServerMetrics.flushPassLabel] = ServerMetrics.flushPassBuckets
        return factory
    }

    /// Tells every user the server is going away, closes every connection, then the store.
    public func shutdown() async throws {
        try? await channel.close()
        try? await metricsChannel?.close()
        let goodbye = ServerMessage.loggedOut(reason: .serverShutdown).frame()
        _ = try? await service.hub.disconnectAll(sending: goodbye).get()
        // Queued hashes are cancelled (their logins fail); store writes under way finish before the
        // loops they report to stop, and the store closes before the loops its calls complete on.
        var storeError: Error?
        do { try await service.shutdown() } catch { storeError = error }
        await service.hub.stopWakers()
        service.memory.stop()
        try await group.shutdownGracefully()
        if let storeError { throw storeError }
        logger.info("stopped")
    }

    /// Connection handlers alive now: the open connections plus any being torn down. A count that
    /// stays above the open connections after they close means connections leak.
    public var connectionHandlers: Int { service.handlers.withLockedValue { $0 } }

    /// Logins waiting for their name's turn to check a password; zero once their connections closed.
    public var loginsWaiting: Int { service.admission.waiting }
    /// Names whose password check (one at a time per name) is under way.
    public var namesBeingChecked: Int { service.admission.runningNames }

    /// Connections counted open from the IP address `address` by the per-address limit.
    public func connectionsCounted(from address: String) -> Int {
        guard let socket = try? SocketAddress(ipAddress: address, port: 0) else { return 0 }
        return service.connections.openCount(socket)
    }

    /// Waits until the listener closes.
    public func waitUntilClosed() async throws {
        try await channel.closeFuture.get()
    }
}
