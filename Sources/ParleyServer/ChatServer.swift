import Foundation
import Logging
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

/// A running Parley server: one TLS listener, its event loops, the hub and the store.
public final class ChatServer: Sendable {
    /// The port actually bound (useful with port 0).
    public let port: Int
    private let channel: Channel
    private let group: MultiThreadedEventLoopGroup
    private let service: ChatService
    private let logger: Logger
    /// Applies the other nodes' notifications (ends when the bus finishes its stream).
    private let receiving: Task<Void, Never>

    private init(port: Int, channel: Channel, group: MultiThreadedEventLoopGroup, service: ChatService, logger: Logger,
                 receiving: Task<Void, Never>) {
        self.port = port
        self.channel = channel
        self.group = group
        self.service = service
        self.logger = logger
        self.receiving = receiving
    }

    /// Builds the TLS context (off the event loops), opens the store, and starts listening.
    public static func start(
        configuration: ServerConfiguration,
        store: (any ChatStore)? = nil,
        cluster: (any ClusterBus)? = nil,
        logger: Logger = Logger(label: "parley.server")
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
                chatStore = try await configuration.database.open(
                    password: configuration.databasePassword, eventLoopGroup: group, logger: logger)
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
        let loops = Array(group.makeIterator())
        let hub = Hub(eventLoops: loops, minFlushInterval: configuration.minFlushInterval)
        let passwords = PasswordService(
            parameters: configuration.hashParameters, threads: configuration.hashingThreads,
            maxPending: configuration.maxPendingHashes)
        let admission = LoginAdmission(
            maxWaitingPerName: configuration.maxLoginsWaitingPerName, backoff: configuration.addressBackoff)
        let service = ChatService(
            store: chatStore, passwords: passwords, hub: hub, cluster: bus, configuration: configuration, logger: logger,
            admission: admission)
        let receiver = ClusterReceiver(service: service)
        let receiving = Task { await receiver.run() }
        await bus.start()
        let channel: Channel
        let tlsSettings = TLSHandler.Settings(context: tls, handshakeTimeout: configuration.handshakeTimeout, logger: logger)
        do {
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
                        try sync.addHandler(
                            TLSHandler(settings: tlsSettings))
                        try sync.addHandler(ClientHandler(service: service))
                    }
                }
                .bind(host: configuration.host, port: configuration.port).get()
        } catch {
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
        return ChatServer(port: port, channel: channel, group: group, service: service, logger: logger, receiving: receiving)
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

    /// Tells every user the server is going away, closes every connection, then the store.
    public func shutdown() async throws {
        try? await channel.close()
        let goodbye = ServerMessage.loggedOut(reason: .serverShutdown).frame()
        _ = try? await service.hub.disconnectAll(sending: goodbye).get()
        // The logouts above are published before the bus lets go of this node's claims and row.
        await service.cluster.shutdown()
        await receiving.value
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

    /// Waits until the listener closes.
    public func waitUntilClosed() async throws {
        try await channel.closeFuture.get()
    }
}
