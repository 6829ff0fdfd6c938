import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL cluster for tests: its own directory, a free port on 127.0.0.1, trust
/// authentication (loopback only), fsync off. `createDatabase()` hands each test a database of its
/// own; `stop(immediate:)`, `start()` and `restart()` let tests take the database away under a
/// running server. The cluster is stopped and its directory removed by `terminate()`, at deinit,
/// and (for `shared()`) when the test process exits.
public final class PostgresProcess: @unchecked Sendable {
    /// The cluster's directory (data, log, Unix socket).
    public let directory: URL
    /// The TCP port it listens on (127.0.0.1), fixed for its life so restarts keep the URLs valid.
    public let port: Int
    private let tools: Tools
    // Guarded by `lock`: stop/start/terminate may come from several tests' tasks.
    private let lock = NSLock()
    private var terminated = false

    /// The superuser `initdb -U` creates.
    public static let superuser = "postgres"

    private init(directory: URL, port: Int, tools: Tools) {
        self.directory = directory
        self.port = port
        self.tools = tools
    }

    deinit { terminateNow() }

    /// One cluster per test process (initdb takes seconds), started on first use.
    public static func shared() async throws -> PostgresProcess {
        try await sharedCluster.value
    }

    private static let sharedCluster = Task { () throws -> PostgresProcess in
        let cluster = try await PostgresProcess.start()
        sharedForExit.withLockedValue { $0 = cluster }
        atexit { PostgresProcess.sharedForExit.withLockedValue { $0 }?.terminateNow() }
        return cluster
    }

    private static let sharedForExit = NIOLockedValueBox<PostgresProcess?>(nil)

    /// Initialises and starts a new cluster.
    public static func start() async throws -> PostgresProcess {
        let tools = try Tools.locate()
        await removeAbandonedClusters(tools)
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(directoryPrefix)\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        try "\(getpid())".write(to: directory.appendingPathComponent(ownerFile), atomically: true, encoding: .utf8)
        if tools.asPostgresUser {
            // initdb refuses to run as root: the cluster belongs to the postgres system user.
            guard let owner = getpwnam("postgres") else { throw PostgresProcessError.noPostgresUser }
            guard chown(directory.path, owner.pointee.pw_uid, owner.pointee.pw_gid) == 0 else {
                throw PostgresProcessError.toolFailed("chown \(directory.path)", String(cString: strerror(errno)))
            }
        }
        let data = directory.appendingPathComponent("data").path
        try await tools.run("initdb", ["-D", data, "-A", "trust", "-U", superuser, "-E", "UTF8", "--no-sync"],
                            in: directory)
        var lastError: Error = PostgresProcessError.noFreePort
        // A port found free can be taken before postgres binds it: try a few.
        for _ in 0..<3 {
            let cluster = PostgresProcess(directory: directory, port: try freeLoopbackPort(), tools: tools)
            do {
                try await cluster.start()
                return cluster
            } catch {
                lastError = error
                cluster.lock.withLock { cluster.terminated = true }  // the next attempt reuses the directory
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw lastError
    }

    private static let directoryPrefix = "parley-pg-"
    private static let ownerFile = "owner.pid"

    /// A test process that crashed or was killed never ran its cleanup: stop the clusters whose
    /// owner is gone, so they do not pile up on a shared machine.
    private static func removeAbandonedClusters(_ tools: Tools) async {
        let temp = FileManager.default.temporaryDirectory
        let names = (try? FileManager.default.contentsOfDirectory(atPath: temp.path)) ?? []
        for name in names where name.hasPrefix(directoryPrefix) {
            let directory = temp.appendingPathComponent(name)
            guard let text = try? String(contentsOf: directory.appendingPathComponent(ownerFile), encoding: .utf8),
                  let owner = pid_t(text), kill(owner, 0) != 0, errno == ESRCH
            else { continue }
            try? await tools.run("pg_ctl", ["-D", directory.appendingPathComponent("data").path, "-m", "immediate", "stop"],
                                 in: directory)
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// The URL of `database` on this cluster, as `parley-server --db` takes it.
    public func url(database: String) -> String {
        "postgresql://\(Self.superuser)@127.0.0.1:\(port)/\(database)"
    }

    /// The Unix-socket form of the URL (`-k` puts the socket in the cluster's directory).
    public func socketURL(database: String) -> String {
        "postgresql://\(Self.superuser)@/\(database)?host=\(directory.path)&port=\(port)"
    }

    /// Creates a new, empty database with a unique name and returns that name.
    public func createDatabase() async throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await tools.run("createdb", ["-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, name],
                            in: directory, asPostgresUser: false)
        return name
    }

    /// Runs one SQL statement in `database` with psql (for tests that change a database behind
    /// the server's back).
    public func execute(_ sql: String, database: String) async throws {
        try await tools.run("psql", [
            "-h", "127.0.0.1", "-p", "\(port)", "-U", Self.superuser, "-d", database, "-v", "ON_ERROR_STOP=1", "-c", sql,
        ], in: directory, asPostgresUser: false)
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    public func start() async throws {
        try await tools.run("pg_ctl", [
            "-D", dataPath, "-w", "-t", "60", "-l", directory.appendingPathComponent("pg.log").path, "-o",
            "-p \(port) -k \(directory.path) -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200",
            "start",
        ], in: directory)
    }

    /// Stops the cluster: `immediate` kills it without a shutdown checkpoint, like a crash.
    public func stop(immediate: Bool = false) async throws {
        try await tools.run("pg_ctl", ["-D", dataPath, "-w", "-m", immediate ? "immediate" : "fast", "stop"],
                            in: directory)
    }

    /// Stops (fast) and starts again on the same port.
    public func restart() async throws {
        try await stop()
        try await start()
    }

    /// The server's log so far, for failure messages.
    public func log() -> String {
        (try? String(contentsOf: directory.appendingPathComponent("pg.log"), encoding: .utf8)) ?? ""
    }

    /// Stops the cluster at once and removes its directory. Idempotent.
    public func terminate() { terminateNow() }

    private var dataPath: String { directory.appendingPathComponent("data").path }

    private func terminateNow() {
        let first = lock.withLock { () -> Bool in
            defer { terminated = true }
            return !terminated
        }
        guard first else { return }
        // Synchronous on purpose: this runs from deinit and atexit, where nothing can be awaited.
        tools.runBlocking("pg_ctl", ["-D", dataPath, "-m", "immediate", "stop"])
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Why the test database could not be set up.
public enum PostgresProcessError: Error, CustomStringConvertible {
    case notInstalled
    case noPostgresUser
    case noFreePort
    case toolFailed(String, String)

    public var description: String {
        switch self {
        case .notInstalled:
            "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or PARLEY_PG_BINDIR): run scripts/install-deps.sh"
        case .noPostgresUser: "running as root needs the postgres system user (Debian's postgresql package creates it)"
        case .noFreePort: "no free port on 127.0.0.1"
        case .toolFailed(let command, let output): "\(command) failed: \(output)"
        }
    }
}

/// Where PostgreSQL's programs are and how to run them (as the postgres user when we are root).
private struct Tools: Sendable {
    let binDirectory: URL
    let asPostgresUser: Bool

    static func locate() throws -> Tools {
        let fm = FileManager.default
        var candidates: [String] = []
        if let dir = ProcessInfo.processInfo.environment["PARLEY_PG_BINDIR"] { candidates.append(dir) }
        let versions = ((try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? [])
            .compactMap(Int.init).sorted(by: >)
        candidates += versions.map { "/usr/lib/postgresql/\($0)/bin" }
        guard let dir = candidates.first(where: { fm.isExecutableFile(atPath: $0 + "/initdb") }) else {
            throw PostgresProcessError.notInstalled
        }
        return Tools(binDirectory: URL(fileURLWithPath: dir), asPostgresUser: geteuid() == 0)
    }

    private func argv(_ tool: String, _ arguments: [String], asPostgresUser: Bool?) -> [String] {
        let path = binDirectory.appendingPathComponent(tool).path
        guard asPostgresUser ?? self.asPostgresUser else { return [path] + arguments }
        return ["/usr/sbin/runuser", "-u", "postgres", "--", path] + arguments
    }

    /// Runs a tool to completion without blocking the caller's thread; its output goes to a file,
    /// not a pipe, because the server pg_ctl starts inherits descriptors and would hold a pipe open.
    func run(_ tool: String, _ arguments: [String], in directory: URL, asPostgresUser: Bool? = nil) async throws {
        let command = argv(tool, arguments, asPostgresUser: asPostgresUser)
        let outPath = directory.appendingPathComponent("tool-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: outPath) }
        // Foundation's Process was seen to leave runuser unreaped (a zombie, isRunning true for
        // ever) when several tests spawned at once: spawn and wait for this one pid ourselves, on
        // a thread of its own so no task-pool thread blocks.
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: Self.spawnAndWait(command, output: outPath)) }.start()
        }
        guard status == 0 else {
            let output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
            throw PostgresProcessError.toolFailed("\(tool) \(arguments.joined(separator: " ")) (status \(status))", output)
        }
    }

    func runBlocking(_ tool: String, _ arguments: [String]) {
        _ = Self.spawnAndWait(argv(tool, arguments, asPostgresUser: nil), output: "/dev/null")
    }

    /// posix_spawn with stdin from /dev/null, stdout and stderr appended to `output` (our other
    /// descriptors are close-on-exec); then waitpid for exactly that child. Returns its exit status.
    private static func spawnAndWait(_ command: [String], output: String) -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArguments = command.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid = pid_t()
        guard posix_spawn(&pid, command[0], &actions, nil, &cArguments, environ) == 0 else { return -1 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { return -1 }
        }
        // WIFEXITED / WEXITSTATUS are macros Swift cannot import.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}

/// A port the OS just gave out on 127.0.0.1 and that is free again.
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw PostgresProcessError.noFreePort }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, length) == 0 && getsockname(fd, sa, &length) == 0
        }
    }
    guard bound else { throw PostgresProcessError.noFreePort }
    return Int(UInt16(bigEndian: address.sin_port))
}
