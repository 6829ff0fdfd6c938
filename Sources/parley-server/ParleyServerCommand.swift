import ArgumentParser
import Foundation
import Logging
import Metrics
import NIOPosix
import ParleyCrypto
import ParleyPostgres
import ParleyServer
import ParleyServerSettings
import ParleyStore
import Prometheus
import ServiceLifecycle
import UnixSignals

@main
struct ParleyServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-server",
        abstract: "Parley chat server: one TLS 1.3 port, accounts hashed at rest, offline messages kept until read.",
        discussion: """
            With no subcommand it serves. The original exercise's form also works:
              parley-server PORT BLOCK_DURATION TIMEOUT
            Settings come from flags, PARLEY_* environment variables and --config FILE (JSON);
            see `parley-server serve --help` and docs/OPERATIONS.md. SIGHUP reloads, SIGTERM drains.
            Certificates: scripts/gen-certs.sh makes certs/server.pem and certs/server.key (mode 0600).
            """,
        version: ParleyServerVersion.string,
        subcommands: [Serve.self, Check.self, ImportCredentials.self, UserAdmin.self, AdminSocketCommand.self],
        defaultSubcommand: Serve.self
    )
}

/// Options every subcommand that touches the database shares.
struct DatabaseOptions: ParsableArguments {
    /// The database when no --db is given.
    static let defaultPath = "parley.sqlite"

    @Option(
        name: .long,
        help: ArgumentHelp(
            "SQLite database file, or postgresql://USER@HOST:PORT/DB (also postgresql://USER@/DB?host=/socket/dir). The PostgreSQL password comes from PARLEY_DB_PASSWORD or --db-password-file, never the URL.",
            valueName: "PATH|URL"))
    var db: String = DatabaseOptions.defaultPath

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
    static let configuration = CommandConfiguration(
        abstract: "Run the server (the default).", discussion: ServerSettings.helpText)

    // The flags are the settings table's (ParleyServerSettings), parsed there with the
    // environment and the file so each setting is declared once.
    @Argument(parsing: .allUnrecognized, help: "Settings flags, or the original form PORT BLOCK_DURATION TIMEOUT.")
    var arguments: [String] = []

    func run() async throws {
        // First of all: a SIGHUP while starting must not kill the process (its default action).
        signal(SIGHUP, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)
        let environment = ProcessInfo.processInfo.environment
        let loaded = try await loadOrExit(arguments, environment)
        let levels = LogLevelControl(loaded.settings.logLevel)
        LoggingSystem.bootstrap { label in ReloadableLogHandler.standardError(label: label, control: levels) }
        let logger = Logger(label: "parley.server")
        if let file = loaded.configFile { logger.info("configuration read", metadata: ["file": "\(file)"]) }
        for setting in ServerSettings.table where loaded.sources[setting.key] != nil {
            logger.info("setting \(setting.key)=\(setting.describe(loaded.settings)) from \(loaded.source(of: setting.key))")
        }
        // Trapped before READY=1: a reload systemd sends right after start is queued, not lost.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        var configuration = loaded.settings.server
        if case .postgres = configuration.database {
            do {
                configuration.databasePassword = try DatabasePassword.load(file: loaded.settings.databasePasswordFile)
            } catch {
                printError("parley-server: db-password-file: \(error)")
                throw ExitCode(64)
            }
        }
        let server: ChatServer
        do {
            // SIGHUP is the reload signal; the admin socket's `reload` raises it in this process.
            configuration.adminReload = { kill(getpid(), SIGHUP) }
            configuration.adminSocketPath = loaded.settings.adminSocketPath
            var registry: PrometheusCollectorRegistry?
            if configuration.metricsListen != nil {
                // Once per process: libraries that use swift-metrics report into the same registry.
                let shared = PrometheusCollectorRegistry()
                MetricsSystem.bootstrap(ChatServer.metricsFactory(registry: shared))
                registry = shared
            }
            server = try await ChatServer.start(configuration: configuration, logger: logger, metricsRegistry: registry)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(70)
        }
        let notifier = SystemdNotifier(environment: environment)
        let status = "listening on \(loaded.settings.server.host):\(server.port)"
        if let failure = notifier.notify(.ready(status: status)) { logger.warning("systemd notify: \(failure)") }
        let reloader = ServerReloader(
            running: loaded.settings, arguments: arguments, environment: environment, server: server, levels: levels,
            logger: logger)
        let service = ParleyService(server: server, reloader: reloader, hangups: hangups, notifier: notifier, status: status, logger: logger)
        // A fixed name: ServiceLifecycle logs the service's description, which would hold the environment.
        var group = ServiceGroupConfiguration(
            services: [.init(service: service, serviceName: "parley-server")], gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        // Backstops only: the drain bounds itself (--drain-timeout); these end a drain that could not.
        let drain = loaded.settings.drainTimeout.nanoseconds / 1_000_000_000
        group.maximumGracefulShutdownDuration = .seconds(drain + 10)
        group.maximumCancellationDuration = .seconds(5)
        try await ServiceGroup(configuration: group).run()
    }
}

/// Reads the settings, or prints the one line saying what is wrong and exits (64 or 78).
func loadOrExit(_ arguments: [String], _ environment: [String: String]) async throws -> LoadedSettings {
    do {
        return try await SettingsLoader.load(arguments: arguments, environment: environment)
    } catch {
        printError("parley-server: \(error.message)")
        throw ExitCode(error.exitCode)
    }
}

/// The running server as a service: reloads on SIGHUP until a graceful shutdown, then drains.
struct ParleyService: Service, CustomStringConvertible {
    var description: String { "parley-server" }
    let server: ChatServer
    var reloader: ServerReloader
    let hangups: UnixSignalsSequence
    let notifier: SystemdNotifier
    let status: String
    let logger: Logger

    func run() async throws {
        var reloader = reloader
        for await _ in hangups.cancelOnGracefulShutdown() {
            notifier.notify(.reloading)
            await reloader.reload()
            notifier.notify(.ready(status: status))
        }
        notifier.notify(.stopping)
        logger.info("shutting down: draining connections")
        try await server.shutdown(drainTimeout: reloader.running.drainTimeout)
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the configuration, certificate, key, database permissions and integrity; exit 1 on any problem.",
        discussion: "Takes the same --config FILE, flags and environment as serve. One line per finding: ok, warning or problem.")

    @Argument(parsing: .allUnrecognized, help: "--config FILE and settings flags, as for serve.")
    var arguments: [String] = []

    func run() async throws {
        let loaded = try await loadOrExit(arguments, ProcessInfo.processInfo.environment)
        let lines = await ConfigCheck.run(loaded)
        for line in lines { print(line) }
        let problems = lines.filter { $0.status == .problem }.count
        let warnings = lines.filter { $0.status == .warning }.count
        print(problems == 0 ? "check passed (\(warnings) warnings)" : "check failed: \(problems) problems, \(warnings) warnings")
        if problems > 0 { throw ExitCode(1) }
    }
}
