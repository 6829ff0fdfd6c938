import Configuration
import Foundation
import NIOConcurrencyHelpers
import SystemPackage

/// Settings read and validated, with the source of each value that was not a default.
public struct LoadedSettings: Sendable {
    public var settings: ServerSettings
    /// Source per key, for every key some source set.
    public var sources: [String: SettingSource]
    /// The configuration file read, if any.
    public var configFile: String?

    /// Where `key` came from.
    public func source(of key: String) -> SettingSource { sources[key] ?? .defaultValue }

    /// Settings that differ from `running` but only take effect at a restart, as "key (old -> new)".
    public func restartNeeded(comparedWith running: ServerSettings) -> [String] {
        ServerSettings.table.filter { !$0.reloadable && $0.read(running) != $0.read(settings) }.map {
            "\($0.key) (\($0.describe(running)) -> \($0.describe(settings)))"
        }
    }
}

/// Reads the settings in `ServerSettings.table` from the command line, the environment and a
/// JSON file, in that precedence, through swift-configuration's providers.
public enum SettingsLoader {
    /// Loads and validates everything, or throws the first problem as one line. `arguments` are
    /// the serve/check arguments without the program name.
    public static func load(arguments: [String], environment: [String: String]) async throws(SettingError) -> LoadedSettings {
        let command = try CommandLine(parsing: arguments)
        let configFile = command.configFile ?? environment["PARLEY_CONFIG"].flatMap { $0.isEmpty ? nil : $0 }
        let secretVariables = Set(ServerSettings.table.filter(\.secret).map(\.environmentVariable))
        let env = EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(secretVariables))
        var file: FileSource?
        if let configFile { file = try await FileSource.read(configFile) }

        var loaded = LoadedSettings(settings: ServerSettings(), sources: [:], configFile: configFile)
        for setting in ServerSettings.table {
            let found: (ConfigContent, SettingSource, String)?
            if let given = command.values[setting.key] {
                found = (try given.content(for: setting), given.source, setting.hidesValue ? "<secret>" : "\"\(given.raw)\"")
            } else if let value = try lookUpEnvironment(setting, in: env) {
                found = value
            } else if let file, let value = try file.lookUp(setting) {
                found = value
            } else {
                found = nil
            }
            guard let (content, source, raw) = found else { continue }
            if let reason = setting.write(&loaded.settings, content) {
                throw SettingError(
                    key: setting.key, reason: reason, value: setting.hidesValue ? "<secret>" : raw, source: source)
            }
            loaded.sources[setting.key] = source
        }
        return loaded
    }

    private static func lookUpEnvironment(
        _ setting: Setting, in env: EnvironmentVariablesProvider
    ) throws(SettingError) -> (ConfigContent, SettingSource, String)? {
        let name = setting.environmentVariable
        let source = SettingSource.environment(name: name)
        guard let raw = try? env.environmentValue(forName: name) else { return nil }
        do {
            guard let value = try env.value(forKey: AbsoluteConfigKey([name]), type: setting.type).value else { return nil }
            return (value.content, source, setting.hidesValue ? "<secret>" : "\"\(raw)\"")
        } catch {
            throw SettingError(key: setting.key, reason: setting.type.mustBe, value: "\"\(raw)\"", source: source)
        }
    }
}

/// The JSON file through `FileProvider<JSONSnapshot>`, with the keys it holds (to refuse unknown ones).
struct FileSource: Sendable {
    let path: String
    let provider: FileProvider<JSONSnapshot>

    static func read(_ path: String) async throws(SettingError) -> FileSource {
        // The snapshot asks the secrets specifier about every key it parses: that is how the
        // keys present are learned (the snapshot keeps them private), and how secret ones are marked.
        let seen = NIOLockedValueBox<[String]>([])
        let secretKeys = Set(ServerSettings.table.filter(\.secret).map(\.key))
        let options = JSONSnapshot.ParsingOptions(
            secretsSpecifier: .dynamic { key, _ in
                seen.withLockedValue { $0.append(key) }
                return secretKeys.contains(key)
            })
        let provider: FileProvider<JSONSnapshot>
        do {
            provider = try await FileProvider<JSONSnapshot>(parsingOptions: options, filePath: FilePath(path))
        } catch {
            throw SettingError("cannot read configuration file \(path): \(error)", exitCode: 78)
        }
        let known = Set(ServerSettings.table.map(\.key))
        if let unknown = seen.withLockedValue({ $0 }).sorted().first(where: { !known.contains($0) }) {
            let hint = closestKey(to: unknown).map { " (did you mean \"\($0)\"?)" } ?? ""
            throw SettingError("unknown key \"\(unknown)\" in configuration file \(path)\(hint)", exitCode: 78)
        }
        return FileSource(path: path, provider: provider)
    }

    /// The table key a typo most likely meant: fewest single-character edits, at most 3.
    static func closestKey(to typo: String) -> String? {
        func distance(_ a: [Character], _ b: [Character]) -> Int {
            var previous = Array(0...b.count)
            for (i, x) in a.enumerated() {
                var current = [i + 1]
                for (j, y) in b.enumerated() {
                    current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
                }
                previous = current
            }
            return previous[b.count]
        }
        let scored = ServerSettings.table.map { ($0.key, distance(Array(typo), Array($0.key))) }
        return scored.filter { $0.1 <= 3 }.min { $0.1 < $1.1 }?.0
    }

    func lookUp(_ setting: Setting) throws(SettingError) -> (ConfigContent, SettingSource, String)? {
        let key = AbsoluteConfigKey([setting.key])
        let source = SettingSource.file(path: path)
        do {
            guard let value = try provider.value(forKey: key, type: setting.type).value else { return nil }
            return (value.content, source, setting.hidesValue ? "<secret>" : value.content.shown)
        } catch {
            // Say what the file holds instead, if it is some other simple type.
            let other = [ConfigType.string, .int, .bool, .double].lazy.compactMap { type in
                try? provider.value(forKey: key, type: type).value?.content.shown
            }.first ?? "something else"
            throw SettingError(key: setting.key, reason: setting.type.mustBe, value: other, source: source)
        }
    }
}

/// The serve/check command line: `--config FILE`, the table's flags, and the positional form.
struct CommandLine {
    struct Given {
        var raw: String
        var source: SettingSource
        var isClear = false

        func content(for setting: Setting) throws(SettingError) -> ConfigContent {
            if isClear { return .bool(false) }
            switch setting.type {
            case .int:
                guard let value = Int(raw) else {
                    throw SettingError(key: setting.key, reason: setting.type.mustBe, value: "\"\(raw)\"", source: source)
                }
                return .int(value)
            case .bool:
                switch raw.lowercased() {
                case "true", "yes", "1": return .bool(true)
                case "false", "no", "0": return .bool(false)
                default: throw SettingError(key: setting.key, reason: setting.type.mustBe, value: "\"\(raw)\"", source: source)
                }
            default:
                return .string(raw)
            }
        }
    }

    var configFile: String?
    var values: [String: Given] = [:]

    init(parsing arguments: [String]) throws(SettingError) {
        var positional: [String] = []
        var index = 0
        func usage(_ text: String) -> SettingError { SettingError(text, exitCode: 64) }
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                positional.append(argument)
                continue
            }
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts[0]
            let inline = parts.count == 2 ? parts[1] : nil
            func value() throws(SettingError) -> String {
                if let inline { return inline }
                guard index < arguments.count else { throw usage("\(name) needs a value") }
                index += 1
                return arguments[index - 1]
            }
            if name == "--config" {
                configFile = try value()
                continue
            }
            guard let setting = ServerSettings.table.first(where: { $0.flagName == name }) else {
                let secret = ServerSettings.table.contains { $0.secret && "--\($0.key)" == name }
                throw usage(secret ? "\(name) is a secret: set it in the environment or the configuration file, never on the command line" : "unknown option \(name) (see parley-server serve --help)")
            }
            if case .clears = setting.flag {
                guard inline == nil else { throw usage("\(name) takes no value") }
                values[setting.key] = Given(raw: "false", source: .commandLine(flag: name), isClear: true)
            } else {
                values[setting.key] = Given(raw: try value(), source: .commandLine(flag: name))
            }
        }
        guard !positional.isEmpty else { return }
        guard positional.count == 3 else {
            throw usage("the original form takes exactly three numbers: PORT BLOCK_DURATION TIMEOUT (got \(positional.joined(separator: " ")))")
        }
        let keys = ServerSettings.positionalKeys
        if keys.contains(where: { values[$0.key] != nil }) {
            throw usage("give either PORT BLOCK_DURATION TIMEOUT or the --port/--block-duration/--timeout flags, not both")
        }
        for (value, (name, key)) in zip(positional, keys) {
            values[key] = Given(raw: value, source: .positional(name: name))
        }
    }
}

extension ConfigType {
    /// The phrase an error uses for a value of the wrong type.
    var mustBe: String {
        switch self {
        case .int: "must be an integer"
        case .bool: "must be true or false"
        case .double: "must be a number"
        default: "must be a string"
        }
    }
}

extension ConfigContent {
    /// The value as an error message shows it.
    var shown: String {
        switch self {
        case .string(let text): "\"\(text)\""
        case .int(let value): String(value)
        case .bool(let value): String(value)
        case .double(let value): String(value)
        default: "a list"
        }
    }
}
