import Foundation
import Logging
import NIOConcurrencyHelpers
import Metrics
import NIOCore
import NIOPosix
import ParleyCluster
import ParleyClusterPostgres
import ParleyCrypto
import ParleyProtocol
import ParleyPostgres
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
    let service: ChatService
    let logger: Logger
    private let admin: AdminServer?
    /// The TLS settings the next connection gets; a reload swaps in a new context, and open
    /// connections keep the one they were made with (each handler holds its own reference).
    let tls: NIOLockedValueBox<TLSHandler.Settings>
    /// Applies the other nodes' notifications (ends when the bus finishes its stream).
    private let receiving: Task<Void, Never>

    private init(
        port: Int, channel: Channel, admin: AdminServer?, metricsChannel: Channel?, group: MultiThreadedEventLoopGroup,
        service: ChatService, logger: Logger, tls: NIOLockedValueBox<TLSHandler.Settings>, receiving: Task<Void, Never>
    ) {
        self.port = port
        self.channel = channel
        self.admin = admin
        self.metricsChannel = metricsChannel
        self.metricsPort = metricsChannel?.localAddress?.port
        self.group = group
        self.service = service
        self.logger = logger
        self.tls = tls
        self.receiving = receiving
    }

    /// Builds the TLS context (off the event loops), opens the store, and starts listening.
    /// Metrics go to `metricsRegistry` (the process's, when the binary bootstrapped `MetricsSystem`
    /// with it), or to a registry of this server's own when `metricsListen` is set and none is
    /// given; otherwise nothing is recorded.
    public static func start(
        configuration: ServerConfiguration,
        store: (any ChatStore)? = nil,
        cluster: (any ClusterBus)? = nil,
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
        let bus: any ClusterBus
        do {
            if let store {
                chatStore = store
            } else {
                // On the server's own loops: no second, global event-loop group just for the store.
                switch configuration.database {
                case .sqlite(let path):
                    let sqlite = try await SQLiteStore.open(path: path, eventLoopGroup: group, logger: logger)
                    chatStore = sqlite
                    try await refuseDamaged(sqlite, path: path)
                case .postgres:
                    chatStore = try await configuration.database.open(
                        password: configuration.databasePassword, eventLoopGroup: group, logger: logger)
                }
            }
            bus = try cluster ?? makeBus(configuration: configuration, eventLoop: group.next(), logger: logger)
            // In a cluster the other nodes' users are online: the bus closes only what dead nodes left.
            if !bus.isClustered {
                let closed = try await chatStore.closeOpenLogins(at: Date())
                if closed > 0 { logger.info("closed \(closed) sessions left open by an earlier stop") }
            }
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
            store: chatStore, passwords: passwords, hub: hub, cluster: bus, configuration: configuration, logger: logger,
            admission: admission, metrics: metrics)
        let receiver = ClusterReceiver(service: service)
        let receiving = Task { await receiver.run() }
        await bus.start()
        let channel: Channel
        var admin: AdminServer?
        var metricsChannel: Channel?
        let tlsSettings = NIOLockedValueBox(
            TLSHandler.Settings(
                context: tls, handshakeTimeout: configuration.handshakeTimeout, logger: logger,
                handshakeFailed: { metrics.handshakeFailed(.init($0)) }))
        let limiter = service.connections
        do {
            if let address = configuration.metricsListen, let registry {
                metricsChannel = try await MetricsListener.start(at: address, group: group, registry: registry)
            }
            try await hub.startWakers()
            service.memory.start(on: loops[0])
            // Before the chat port: a second server on the same socket (so, most likely, the same
            // database) stops here, before it takes any client.
            if let path = configuration.adminSocketPath {
                admin = try await AdminServer.start(path: path, group: group, service: service)
            }
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
                            TLSHandler(settings: tlsSettings.withLockedValue { $0 }))
                        try sync.addHandler(ClientHandler(service: service))
                    }
                }
                .bind(host: configuration.host, port: configuration.port).get()
        } catch {
            await admin?.stop()
            try? await metricsChannel?.close()
            service.memory.stop()
            await bus.shutdown()
            await receiving.value
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
        return ChatServer(
            port: port, channel: channel, admin: admin, metricsChannel: metricsChannel, group: group, service: service,
            logger: logger, tls: tlsSettings, receiving: receiving)
    }

    /// A PostgreSQL database is shared by every node given it: they form one cluster, with no other
    /// setting. A SQLite file is one node's, so its bus does nothing.
    private static func makeBus(configuration: ServerConfiguration, eventLoop: any EventLoop, logger: Logger) throws
        -> any ClusterBus
    {
        guard case .postgres(let url) = configuration.database else { return SingleNodeBus() }
        let settings = PostgresClusterBus.Settings(
            connection: try url.connectionConfiguration(password: configuration.databasePassword),
            nodeName: configuration.nodeName ?? ProcessInfo.processInfo.hostName,
            lease: configuration.clusterLease, eventLoop: eventLoop)
        return PostgresClusterBus(settings: settings, logger: logger)
    }

    /// The Prometheus factory for a registry, with the flush-pass histogram's buckets.
    public static func metricsFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets[ServerMetrics.flushPassLabel] = ServerMetrics.flushPassBuckets
        return factory
    }

    /// Refuses to serve from a file SQLite reports damaged: better down than losing messages.
    private static func refuseDamaged(_ store: SQLiteStore, path: String) async throws {
        let problems: [String]
        do { problems = try await store.quickCheck() } catch { problems = ["\(error)"] }
        guard problems.isEmpty else {
            try? await store.close()
            throw ServerStartError.damagedDatabase(path: path, problems: problems)
        }
    }

    /// Tells every user the server is going away, closes every connection, then the store. With a
    /// `drainTimeout`, whatever has not finished by then (a client that never reads its goodbye,
    /// a store write that hangs) is cut off: the event loops close the connections left.
    public func shutdown(drainTimeout: TimeAmount? = nil) async throws {
        await admin?.stop()
        try? await channel.close()
        try? await metricsChannel?.close()
        let outcome = DrainOutcome()
        let drain: @Sendable () async -> Void = { [service, receiving] in
            let goodbye = ServerMessage.loggedOut(reason: .serverShutdown).frame()
            _ = try? await service.hub.disconnectAll(sending: goodbye).get()
            // The logouts above are published before the bus lets go of this node's claims and row.
            await service.cluster.shutdown()
            await receiving.value
            // Queued hashes are cancelled (their logins fail); store writes under way finish before the
            // loops they report to stop, and the store closes before the loops its calls complete on.
            do { try await service.shutdown() } catch { outcome.storeError.withLockedValue { $0 = error } }
        }
        if let drainTimeout {
            if !(await Self.finishes(within: drainTimeout, on: group.next(), drain)) {
                logger.warning("drain did not finish within \(drainTimeout.nanoseconds / 1_000_000) ms: closing what is left")
            }
        } else {
            await drain()
        }
        await service.hub.stopWakers()
        service.memory.stop()
        try await group.shutdownGracefully()
        if let storeError = outcome.storeError.withLockedValue({ $0 }) { throw storeError }
        logger.info("stopped")
    }

    private final class DrainOutcome: Sendable {
        let storeError = NIOLockedValueBox<Error?>(nil)
    }

    /// Runs `work` in a task and returns true when it ends, or false once `timeout` passes first
    /// (the task goes on; nothing waits for it).
    static func finishes(
        within timeout: TimeAmount, on loop: EventLoop, _ work: @escaping @Sendable () async -> Void
    ) async -> Bool {
        let promise = loop.makePromise(of: Bool.self)
        let decided = NIOLockedValueBox(false)
        let settle: @Sendable (Bool) -> Void = { finished in
            let first = decided.withLockedValue { done -> Bool in
                defer { done = true }
                return !done
            }
            if first { promise.succeed(finished) }
        }
        let timer = loop.scheduleTask(in: timeout) { settle(false) }
        Task {
            await work()
            timer.cancel()
            settle(true)
        }
        return (try? await promise.futureResult.get()) ?? false
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
