import ArgumentParser
import Foundation
import Logging
import NIOPosix
import ParleyCrypto
import ParleyPostgres
import ParleyServer
import ParleyStore

@main
struct ParleyServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-server",
        abstract: "Parley chat server: one TLS 1.3 port, accounts hashed at rest, offline messages kept until read.",
        discussion: """
            With no subcommand it serves. The original exercise's form also works:
              parley-server PORT BLOCK_DURATION TIMEOUT
            Certificates: scripts/gen-certs.sh makes certs/server.pem and certs/server.key (mode 0600).
            """,
        version: ParleyServerVersion.string,
        subcommands: [Serve.self, ImportCredentials.self, UserAdmin.self],
        defaultSubcommand: Serve.self
    )
}

/// Options every subcommand that touches the database shares.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "SQLite database file, or postgresql://USER@HOST:PORT/DB (also postgresql://USER@/DB?host=/socket/dir). The PostgreSQL password comes from PARLEY_DB_PASSWORD or --db-password-file, never the URL.",
            valueName: "PATH|URL"))
    var db: String = "parley.sqlite"

    @Option(
        name: .customLong("db-password-file"),
        help: ArgumentHelp("File (mode 0600) whose first line is the PostgreSQL password; overrides PARLEY_DB_PASSWORD.",
                           valueName: "PATH"))
    var passwordFile: String?

    /// Checked before anything runs: a bad URL or password file is one line on stderr and exit 64.
    func validate() throws {
        _ = try resolved()
    }

    /// The parsed location and the password (nil for SQLite).
    func resolved() throws -> (location: StoreLocation, password: DatabasePassword?) {
        do {
            let location = try StoreLocation(parsing: db)
            guard case .postgres = location else {
                if passwordFile != nil { throw DatabaseOptionError.passwordFileWithoutPostgres }
                return (location, nil)
            }
            return (location, try DatabasePassword.load(file: passwordFile))
        } catch {
            printError("parley-server: \(error)")
            throw ExitCode(64)
        }
    }

    /// Opens (and migrates) the store for an admin command.
    func openStore() async throws -> any ChatStore {
        let (location, password) = try resolved()
        do {
            return try await location.open(password: password, eventLoopGroup: MultiThreadedEventLoopGroup.singleton,
                                           logger: Logger(label: "parley.store"))
        } catch {
            printError("parley-server: cannot open the database \(location): \(error)")
            throw ExitCode(70)
        }
    }
}

/// A database option that makes no sense with the others.
enum DatabaseOptionError: Error, CustomStringConvertible {
    case passwordFileWithoutPostgres

    var description: String {
        switch self {
        case .passwordFileWithoutPostgres: "--db-password-file applies only to a postgresql:// --db"
        }
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (the default).")

    @Argument(help: "Original form: PORT BLOCK_DURATION TIMEOUT (same as --port, --block-duration, --timeout).")
    var positional: [Int] = []

    @Option(help: "TCP port to listen on.")
    var port: Int?

    @Option(help: ArgumentHelp("Address to listen on.", valueName: "ADDRESS"))
    var bind: String = "127.0.0.1"

    @Option(name: .customLong("block-duration"), help: ArgumentHelp("Seconds a name stays locked after 3 wrong passwords.", valueName: "SECONDS"))
    var blockDuration: Int?

    @Option(help: ArgumentHelp("Seconds without a command before a user is logged out.", valueName: "SECONDS"))
    var timeout: Int?

    @Option(help: ArgumentHelp("Server certificate (PEM, leaf only).", valueName: "PATH"))
    var cert: String = "certs/server.pem"

    @Option(help: ArgumentHelp("Server private key (PEM, must be mode 0600).", valueName: "PATH"))
    var key: String = "certs/server.key"

    @OptionGroup var database: DatabaseOptions

    @Flag(name: .customLong("no-registration"), help: "Refuse logins with unknown names instead of registering them.")
    var noRegistration = false

    @Option(
        name: .customLong("insecure-hash-cost"),
        help: ArgumentHelp("scrypt log2(N) for NEW hashes, for tests and benchmarks only (production: 17).", valueName: "LN"))
    var hashCost: Int?

    @Option(help: ArgumentHelp("Event loop threads (default: one per core).", valueName: "N"))
    var threads: Int?

    @Option(
        name: .customLong("flush-interval-ms"),
        help: ArgumentHelp("Under load, at most one flush pass per this many ms (0: every loop pass).", valueName: "MS"))
    var flushIntervalMs: Int = 0

    @Option(
        name: .customLong("max-pending-logins"),
        help: ArgumentHelp("Logins waiting for a password hash beyond which new ones are refused.", valueName: "N"))
    var maxPendingLogins: Int = 256

    @Option(
        name: .customLong("address-failure-limit"),
        help: ArgumentHelp(
            "Failed logins from one address within 5 minutes before it is refused (rate_limited) for 30 s, doubling up to 15 min.",
            valueName: "N"))
    var addressFailureLimit: Int = AddressBackoffPolicy().failures

    @Option(name: .customLong("node-name"),
            help: ArgumentHelp("This server's name in a cluster (PostgreSQL --db); default: the host name.", valueName: "NAME"))
    var nodeName: String?

    @Option(name: .customLong("cluster-lease-seconds"),
            help: ArgumentHelp("Cluster lease (tests: a dead node is noticed within about this long).", valueName: "SECONDS",
                               visibility: .hidden))
    var clusterLeaseSeconds: Double = 10

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard positional.isEmpty || positional.count == 3 else {
            throw ValidationError("the original form takes exactly three numbers: PORT BLOCK_DURATION TIMEOUT")
        }
        if !positional.isEmpty, port != nil || blockDuration != nil || timeout != nil {
            throw ValidationError("give either PORT BLOCK_DURATION TIMEOUT or the --port/--block-duration/--timeout flags, not both")
        }
        guard (0...65535).contains(effectivePort) else { throw ValidationError("port must be 0-65535, got \(effectivePort)") }
        guard effectiveBlockDuration >= 1 else { throw ValidationError("block duration must be at least 1 second") }
        guard effectiveTimeout >= 1 else { throw ValidationError("timeout must be at least 1 second") }
        if let hashCost, !PasswordHasher.Parameters.lnBounds.contains(hashCost) {
            throw ValidationError("--insecure-hash-cost must be in \(PasswordHasher.Parameters.lnBounds)")
        }
        if let threads, !(1...64).contains(threads) { throw ValidationError("--threads must be 1-64") }
        guard (0...1000).contains(flushIntervalMs) else { throw ValidationError("--flush-interval-ms must be 0-1000") }
        guard (1...1_000_000).contains(maxPendingLogins) else { throw ValidationError("--max-pending-logins must be 1-1000000") }
        guard (1...1_000_000).contains(addressFailureLimit) else { throw ValidationError("--address-failure-limit must be 1-1000000") }
        guard (0.5...600).contains(clusterLeaseSeconds) else { throw ValidationError("--cluster-lease-seconds must be 0.5-600") }
        if let nodeName, nodeName.isEmpty || nodeName.utf8.count > 64 || nodeName.contains(where: { $0.isNewline }) {
            throw ValidationError("--node-name must be 1-64 characters on one line")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
    }

    var effectivePort: Int { positional.first ?? port ?? 3331 }
    var effectiveBlockDuration: Int { positional.count == 3 ? positional[1] : blockDuration ?? 10 }
    var effectiveTimeout: Int { positional.count == 3 ? positional[2] : timeout ?? 120 }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "parley.server")
        var config = ServerConfiguration()
        config.host = bind
        config.port = effectivePort
        config.blockDuration = .seconds(Int64(effectiveBlockDuration))
        config.idleTimeout = .seconds(Int64(effectiveTimeout))
        config.certificatePath = cert
        config.privateKeyPath = key
        (config.database, config.databasePassword) = try database.resolved()
        config.registrationOpen = !noRegistration
        if let hashCost { config.hashParameters = .init(ln: hashCost, r: 8, p: 1) }
        if let threads { config.eventLoopThreads = threads }
        config.minFlushInterval = .milliseconds(Int64(flushIntervalMs))
        config.maxPendingHashes = maxPendingLogins
        config.addressBackoff.failures = addressFailureLimit
        config.nodeName = nodeName
        config.clusterLease = .milliseconds(Int64(clusterLeaseSeconds * 1000))

        let server: ChatServer
        do {
            server = try await ChatServer.start(configuration: config, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(70)
        }
        let stop = SignalWaiter(signals: [SIGINT, SIGTERM])
        await stop.wait()
        logger.info("shutting down")
        try await server.shutdown()
    }
}

/// Suspends until one of the given signals arrives.
final class SignalWaiter: @unchecked Sendable {
    // The sources are created once and only touched on their queue.
    private var sources: [DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "parley.signals")
    private let signals: [Int32]

    init(signals: [Int32]) { self.signals = signals }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.sync {
                var resumed = false
                for sig in signals {
                    signal(sig, SIG_IGN)
                    let source = DispatchSource.makeSignalSource(signal: sig, queue: queue)
                    source.setEventHandler {
                        if !resumed {
                            resumed = true
                            continuation.resume()
                        }
                    }
                    source.resume()
                    sources.append(source)
                }
            }
        }
    }
}
