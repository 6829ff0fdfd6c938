import Foundation
import ParleyProtocol
import ParleyTestSupport
import Testing

/// Lease of the test nodes: a dead node is noticed within about this long (renewals every third).
let testLease = 2.0

/// N `parley-server` processes on one fresh database of the suite's throwaway PostgreSQL.
final class TestCluster: @unchecked Sendable {
    // Used by one test at a time, sequentially.
    let postgres: PostgresProcess
    let url: String
    /// One CA and server certificate for every node, as an operator would deploy them: a client
    /// given several nodes (`--host a,b`) trusts them all with one `--ca`.
    let certs: TestCertificates
    private(set) var nodes: [ServerProcess] = []

    let lease: Double

    private init(postgres: PostgresProcess, url: String, lease: Double) throws {
        self.postgres = postgres
        self.url = url
        self.lease = lease
        self.certs = try TestCertificates.make()
    }

    /// `lease` in seconds (default `testLease`): longer where the database stays down a while.
    /// `role`: the nodes connect as this ordinary role (created if needed, owning the database)
    /// instead of the superuser; `revoking` functions are taken from PUBLIC first.
    static func start(nodes count: Int, lease: Double = testLease, role: String? = nil, revoking: [String] = [],
                      extra: [String] = []) async throws -> TestCluster {
        let postgres = try await PostgresProcess.shared()
        let database = try await postgres.createDatabase()
        var url = postgres.url(database: database)
        if let role {
            try await postgres.execute(
                "DO $$ BEGIN CREATE ROLE \(role) LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$", database: database)
            try await postgres.execute("ALTER DATABASE \(database) OWNER TO \(role)", database: database)
            for function in revoking {
                try await postgres.execute("REVOKE EXECUTE ON FUNCTION \(function) FROM PUBLIC", database: database)
            }
            url = url.replacingOccurrences(of: "postgresql://\(PostgresProcess.superuser)@", with: "postgresql://\(role)@")
        }
        let cluster = try TestCluster(postgres: postgres, url: url, lease: lease)
        // The first node migrates the database; the others start together.
        cluster.nodes.append(try await cluster.startNode(index: 0, extra: extra))
        try await withThrowingTaskGroup(of: (Int, ServerProcess).self) { group in
            for index in 1..<max(1, count) {
                group.addTask { (index, try await cluster.startNode(index: index, extra: extra)) }
            }
            var started: [(Int, ServerProcess)] = []
            for try await node in group { started.append(node) }
            cluster.nodes += started.sorted { $0.0 < $1.0 }.map(\.1)
        }
        return cluster
    }

    func startNode(index: Int, extra: [String] = []) async throws -> ServerProcess {
        try await ServerProcess.start(
            ["--node-name", "node\(index)", "--cluster-lease-ms", "\(Int(lease * 1000))", "--threads", "1"] + extra,
            certs: certs, database: url, name: "node\(index)")
    }

    /// Replaces node `index` with a fresh process on the same database (a node that comes back).
    func restartNode(_ index: Int) async throws {
        nodes[index] = try await startNode(index: index)
    }

    func stop() {
        if ProcessInfo.processInfo.environment["PARLEY_DUMP_LOGS"] != nil {
            for (i, node) in nodes.enumerated() { print("=== node\(i)\n\(node.log)") }
        }
        for node in nodes { node.stop() }
        certs.remove()
    }

    /// A client logged in as `name` on node `index`.
    func loggedIn(_ name: String, on index: Int, from address: String? = nil) async throws -> TestChatClient {
        let client = try await nodes[index].client(from: address)
        let reply = try await client.login(name, "password-\(name)")
        #expect(reply.isOK, "login \(name) on node\(index): \(reply)")
        return client
    }
}

extension Reply {
    var code: ErrorCode? {
        if case .error(let code, _) = outcome { return code }
        return nil
    }
    var isOK: Bool { code == nil }
    var users: [String]? {
        if case .ok(.users(let users)) = outcome { return users }
        return nil
    }
}

extension TestChatClient {
    /// Waits until `whoelse` answers `expected` (the directory settles within a notification).
    func whoelseBecomes(_ expected: [String], timeout: Double = 5) async throws -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline {
            if try await request(.whoelse).users == expected { return true }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}
