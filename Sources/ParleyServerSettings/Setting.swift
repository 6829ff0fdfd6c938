import Configuration
import Logging
import NIOCore
import ParleyServer

/// Everything `parley-server` can be told, with where each value came from: the server's
/// `ServerConfiguration` plus the settings only the executable uses.
public struct ServerSettings: Sendable {
    public var server = ServerConfiguration()
    /// Lowest level logged (reloadable).
    public var logLevel: Logger.Level = .info
    /// How long a SIGTERM/SIGINT drain may take before the connections left are closed.
    public var drainTimeout: TimeAmount = .seconds(10)
    /// The admin socket as set: nil for the default (beside a SQLite database; none for
    /// PostgreSQL, where several nodes may share one working directory), "none" for off.
    public var adminSocket: String? = nil
    /// Where the PostgreSQL password is read from (else PARLEY_DB_PASSWORD).
    public var databasePasswordFile: String? = nil

    /// The admin socket's path when none is given: beside the database.
    public static func defaultAdminSocket(database: String) -> String { database + ".admin.sock" }

    /// The admin socket the server opens, or nil when it is turned off.
    public var adminSocketPath: String? {
        guard let adminSocket else {
            guard case .sqlite(let path) = server.database else { return nil }
            return Self.defaultAdminSocket(database: path)
        }
        return adminSocket == "none" ? nil : adminSocket
    }

    public init() {}
}

/// Where one setting's value came from, for error messages and `check`.
public enum SettingSource: Sendable, Equatable, CustomStringConvertible {
    case defaultValue
    case file(path: String)
    case environment(name: String)
    case commandLine(flag: String)
    /// The exercise's `parley-server PORT BLOCK_DURATION TIMEOUT` form.
    case positional(name: String)

    public var description: String {
        switch self {
        case .defaultValue: "default"
        case .file(let path): "configuration file \(path)"
        case .environment(let name): "environment variable \(name)"
        case .commandLine(let flag): "command line \(flag)"
        case .positional(let name): "\(name) argument"
        }
    }
}

/// A setting that could not be taken: one line naming the key, the value and its source.
public struct SettingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// EX_USAGE (64) for the command line, EX_CONFIG (78) for the environment or a file.
    public var exitCode: Int32

    public init(_ message: String, exitCode: Int32) {
        self.message = message
        self.exitCode = exitCode
    }

    init(key: String, reason: String, value: String, source: SettingSource) {
        let exitCode: Int32
        switch source {
        case .commandLine, .positional, .defaultValue: exitCode = 64
        case .file, .environment: exitCode = 78
        }
        self.init("\(key) \(reason), got \(value) (\(source))", exitCode: exitCode)
    }

    public var description: String { message }
}

/// One setting, declared once: its file key, environment variable, flag, type, validation and
/// whether a reload (SIGHUP) takes it. `ServerSettings.table` lists them all; flags, help,
/// the environment, the file, reload and docs are all driven from it.
public struct Setting: Sendable {
    /// How the command line sets it.
    public enum Flag: Sendable, Equatable {
        /// `--name VALUE` or `--name=VALUE`.
        case value(String)
        /// `--name` alone sets a boolean setting to false (e.g. `--no-registration`).
        case clears(String)
        /// Not settable on the command line: secrets, which argv would show to every user.
        case none
    }

    /// Key in the JSON configuration file.
    public let key: String
    /// Environment variable (PARLEY_ and the key in upper case, `-` as `_`).
    public let environmentVariable: String
    public let flag: Flag
    /// The value's type as the file and the environment are asked for it.
    public let type: ConfigType
    /// Whether SIGHUP applies a new value to the running server (else it needs a restart).
    public let reloadable: Bool
    /// Never on the command line, never logged.
    public let secret: Bool
    /// What the value is (for help): N, SECONDS, PATH...
    public let valueName: String
    public let help: String
    /// The value in `settings` as text (help, diffs on reload, docs).
    let read: @Sendable (ServerSettings) -> String
    /// Validates `content` and stores it, or says why not (a phrase after the key: "must be ...").
    let write: @Sendable (inout ServerSettings, ConfigContent) -> String?
    /// Copies this setting's value from the second settings into the first (a reload takes the
    /// reloadable ones from the new settings into the running ones).
    let copy: @Sendable (inout ServerSettings, ServerSettings) -> Void

    public init(
        key: String, flag: Flag? = nil, type: ConfigType, reloadable: Bool = false, secret: Bool = false,
        valueName: String, help: String,
        read: @escaping @Sendable (ServerSettings) -> String,
        write: @escaping @Sendable (inout ServerSettings, ConfigContent) -> String?,
        copy: @escaping @Sendable (inout ServerSettings, ServerSettings) -> Void
    ) {
        self.key = key
        self.environmentVariable = "PARLEY_" + key.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
        self.flag = secret ? .none : (flag ?? .value(key))
        self.type = type
        self.reloadable = reloadable
        self.secret = secret
        self.valueName = valueName
        self.help = help
        self.read = read
        self.write = write
        self.copy = copy
    }

    /// The flag's spelling on the command line, if it has one.
    public var flagName: String? {
        switch flag {
        case .value(let name), .clears(let name): "--" + name
        case .none: nil
        }
    }

    /// Whether errors and logs show `<secret>` instead of the value: secrets, and `db`, whose
    /// mistyped URL may carry a password (`postgresql://user:pw@host/db`).
    public var hidesValue: Bool { secret || key == "db" }

    /// The current value as text (secrets redacted).
    public func describe(_ settings: ServerSettings) -> String { secret ? "<secret>" : read(settings) }
}

// MARK: - Typed factories (one line per setting in the table)

extension Setting {
    /// An integer within `range`.
    static func int(
        _ key: String, flag: Flag? = nil, range: ClosedRange<Int>, reloadable: Bool = false, valueName: String = "N",
        help: String, _ path: WritableKeyPath<ServerSettings, Int> & Sendable
    ) -> Setting {
        Setting(
            key: key, flag: flag, type: .int, reloadable: reloadable, valueName: valueName, help: help,
            read: { String($0[keyPath: path]) },
            write: { settings, content in
                guard case .int(let value) = content else { return "must be an integer" }
                guard range.contains(value) else { return "must be \(range.lowerBound)-\(range.upperBound)" }
                settings[keyPath: path] = value
                return nil
            },
            copy: { $0[keyPath: path] = $1[keyPath: path] })
    }

    /// A whole number of `unit`s within `range`, stored as a `TimeAmount`.
    static func duration(
        _ key: String, flag: Flag? = nil, unit: DurationUnit = .seconds, range: ClosedRange<Int>, reloadable: Bool = false,
        help: String, _ path: WritableKeyPath<ServerSettings, TimeAmount> & Sendable
    ) -> Setting {
        Setting(
            key: key, flag: flag, type: .int, reloadable: reloadable, valueName: unit.valueName, help: help,
            read: { String($0[keyPath: path].nanoseconds / unit.nanoseconds) },
            write: { settings, content in
                guard case .int(let value) = content else { return "must be a whole number of \(unit.word)" }
                guard range.contains(value) else { return "must be \(range.lowerBound)-\(range.upperBound) \(unit.word)" }
                settings[keyPath: path] = .nanoseconds(Int64(value) * unit.nanoseconds)
                return nil
            },
            copy: { $0[keyPath: path] = $1[keyPath: path] })
    }

    /// A non-empty string.
    static func string(
        _ key: String, flag: Flag? = nil, reloadable: Bool = false, secret: Bool = false, valueName: String,
        help: String, _ path: WritableKeyPath<ServerSettings, String> & Sendable
    ) -> Setting {
        Setting(
            key: key, flag: flag, type: .string, reloadable: reloadable, secret: secret, valueName: valueName, help: help,
            read: { $0[keyPath: path] },
            write: { settings, content in
                guard case .string(let value) = content else { return "must be a string" }
                guard !value.isEmpty else { return "must not be empty" }
                settings[keyPath: path] = value
                return nil
            },
            copy: { $0[keyPath: path] = $1[keyPath: path] })
    }

    /// true or false.
    static func bool(
        _ key: String, flag: Flag? = nil, reloadable: Bool = false, help: String,
        _ path: WritableKeyPath<ServerSettings, Bool> & Sendable
    ) -> Setting {
        Setting(
            key: key, flag: flag, type: .bool, reloadable: reloadable, valueName: "BOOL", help: help,
            read: { String($0[keyPath: path]) },
            write: { settings, content in
                guard case .bool(let value) = content else { return "must be true or false" }
                settings[keyPath: path] = value
                return nil
            },
            copy: { $0[keyPath: path] = $1[keyPath: path] })
    }

    /// Units for `duration` settings.
    enum DurationUnit: Sendable {
        case seconds, milliseconds
        var nanoseconds: Int64 { self == .seconds ? 1_000_000_000 : 1_000_000 }
        var word: String { self == .seconds ? "seconds" : "milliseconds" }
        var valueName: String { self == .seconds ? "SECONDS" : "MS" }
    }
}
