import Logging
import ParleyServer

/// Applies a SIGHUP: reads the settings again from the same sources and hands the reloadable
/// ones to the running server, without closing a connection. Anything invalid keeps what runs.
public struct ServerReloader: Sendable, CustomStringConvertible {
    /// Never the fields: they hold the environment, which may hold secrets.
    public var description: String { "ServerReloader" }

    /// The settings in force.
    public private(set) var running: ServerSettings
    private let arguments: [String]
    private let environment: [String: String]
    private let server: ChatServer
    private let levels: LogLevelControl
    private let logger: Logger

    public init(
        running: ServerSettings, arguments: [String], environment: [String: String], server: ChatServer,
        levels: LogLevelControl, logger: Logger
    ) {
        self.running = running
        self.arguments = arguments
        self.environment = environment
        self.server = server
        self.levels = levels
        self.logger = logger
    }

    /// What a reload did.
    public enum Outcome: Sendable, Equatable {
        /// Taken; the keys that changed and the ones that need a restart (left as they run).
        case applied(changed: [String], needRestart: [String])
        /// Refused whole: the new settings or the certificate were invalid (the reason is logged).
        case refused(String)
    }

    @discardableResult
    public mutating func reload() async -> Outcome {
        let loaded: LoadedSettings
        do {
            loaded = try await SettingsLoader.load(arguments: arguments, environment: environment)
        } catch {
            logger.warning("reload refused, keeping the running settings: \(error)")
            return .refused(error.message)
        }
        let needRestart = loaded.restartNeeded(comparedWith: running)
        for change in needRestart {
            logger.warning("reload: \(change) needs a restart; keeping the running value")
        }
        var next = running
        for setting in ServerSettings.table where setting.reloadable { setting.copy(&next, loaded.settings) }
        // A new context for every reload, even with the same paths: renewed files keep their names.
        do {
            try await server.reloadCertificate(
                certificatePath: next.server.certificatePath, privateKeyPath: next.server.privateKeyPath)
        } catch {
            logger.warning("reload refused, keeping the running certificate and settings: \(error)")
            return .refused("\(error)")
        }
        let changed = ServerSettings.table.filter { $0.reloadable && $0.read(next) != $0.read(running) }.map(\.key)
        server.apply(next.server.runtimeSettings)
        levels.level = next.logLevel
        running = next
        logger.notice(
            "reloaded", metadata: ["changed": "\(changed.isEmpty ? "nothing (certificate re-read)" : changed.joined(separator: ","))"])
        return .applied(changed: changed, needRestart: needRestart.map { String($0.prefix { $0 != " " }) })
    }
}
