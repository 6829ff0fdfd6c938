import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyCrypto
import ParleyServer
import Prometheus

/// A real server on 127.0.0.1 with a port picked by the OS, fresh certificates and its own database.
public final class TestServer: @unchecked Sendable {
    // Mutated only by the test that owns it, sequentially.
    public let certs: TestCertificates
    public let databasePath: String
    public private(set) var server: ChatServer
    public private(set) var configuration: ServerConfiguration

    public var port: Int { server.port }

    private init(certs: TestCertificates, databasePath: String, server: ChatServer, configuration: ServerConfiguration) {
        self.certs = certs
        self.databasePath = databasePath
        self.server = server
        self.configuration = configuration
    }

    /// Starts a server; `configure` may change settings (timeouts, block duration...).
    public static func start(
        logger: Logger? = nil, metricsRegistry: PrometheusCollectorRegistry? = nil,
        _ configure: (inout ServerConfiguration) -> Void = { _ in }
    ) async throws -> TestServer {
        let certs = try TestCertificates.make()
        var config = ServerConfiguration()
        config.port = 0
        config.certificatePath = certs.certificatePath
        config.privateKeyPath = certs.keyPath
        config.databasePath = certs.directory.appendingPathComponent("parley.sqlite").path
        config.hashParameters = .testing
        config.eventLoopThreads = 2
        // The suite opens many connections and sends many commands from 127.0.0.1: the per-address
        // and per-connection limits are raised here, explicitly; the limit tests set their own.
        config.limits = .loadTesting
        configure(&config)
        let server = try await ChatServer.start(configuration: config, logger: logger ?? Self.quietLogger, metricsRegistry: metricsRegistry)
        return TestServer(certs: certs, databasePath: config.databasePath, server: server, configuration: config)
    }

    /// Stops the server and starts a new one on the same database (a new port).
    public func restart(_ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws {
        try await server.shutdown()
        var config = configuration
        config.port = 0
        configure(&config)
        configuration = config
        server = try await ChatServer.start(configuration: config, logger: Self.quietLogger)
    }

    /// A connected test client, from `sourceAddress` (e.g. "127.0.0.2" for another host) if given.
    public func client(
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton, from sourceAddress: String? = nil
    ) async throws -> TestChatClient {
        try await TestChatClient.connect(port: port, caPath: certs.caPath, group: group, sourceAddress: sourceAddress)
    }

    /// A client that is already logged in.
    public func loggedIn(_ name: String, _ password: String? = nil) async throws -> TestChatClient {
        let client = try await client()
        let reply = try await client.login(name, password ?? "password-\(name)")
        guard case .ok = reply.outcome else { throw TestChatClient.TestClientError.noReply("login of \(name) failed: \(reply)") }
        return client
    }

    public func stop() async {
        try? await server.shutdown()
        certs.remove()
    }

    static let quietLogger: Logger = {
        var logger = Logger(label: "parley.test-server")
        logger.logLevel = ProcessInfo.processInfo.environment["PARLEY_TEST_LOG"] != nil ? .debug : .critical
        return logger
    }()
}

/// Runs `body` with a fresh server, stopping it afterwards whatever happens.
public func withTestServer(
    _ configure: (inout ServerConfiguration) -> Void = { _ in },
    _ body: (TestServer) async throws -> Void
) async throws {
    let server = try await TestServer.start(configure)
    do {
        try await body(server)
    } catch {
        await server.stop()
        throw error
    }
    await server.stop()
}
