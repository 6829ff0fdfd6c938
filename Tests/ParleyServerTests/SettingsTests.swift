import Foundation
import ParleyServerSettings
import ParleyTestSupport
import Testing

/// A JSON configuration file in a fresh directory.
func writeConfig(_ json: String, in directory: URL, name: String = "parley.json") throws -> String {
    let path = directory.appendingPathComponent(name).path
    try json.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}

@Suite("Settings: one table, flags > environment > file > defaults")
struct SettingsTests {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("parley-settings-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    @Test("each source wins over the ones below it, key by key, and says where each value came from")
    func precedence() async throws {
        let file = try writeConfig(#"{"timeout": 100, "block-duration": 7, "max-pending-logins": 99}"#, in: directory)
        let loaded = try await SettingsLoader.load(
            arguments: ["--config", file, "--timeout", "30"],
            environment: ["PARLEY_TIMEOUT": "50", "PARLEY_BLOCK_DURATION": "8"])
        #expect(loaded.settings.server.idleTimeout == .seconds(30))
        #expect(loaded.source(of: "timeout") == .commandLine(flag: "--timeout"))
        #expect(loaded.settings.server.blockDuration == .seconds(8))
        #expect(loaded.source(of: "block-duration") == .environment(name: "PARLEY_BLOCK_DURATION"))
        #expect(loaded.settings.server.maxPendingHashes == 99)
        #expect(loaded.source(of: "max-pending-logins") == .file(path: file))
        #expect(loaded.settings.server.port == 3331)
        #expect(loaded.source(of: "port") == .defaultValue)
    }

    @Test("the exercise's PORT BLOCK_DURATION TIMEOUT form sets the three settings; mixing it with their flags is refused")
    func positionalForm() async throws {
        let loaded = try await SettingsLoader.load(arguments: ["4000", "5", "60"], environment: [:])
        #expect(loaded.settings.server.port == 4000)
        #expect(loaded.settings.server.blockDuration == .seconds(5))
        #expect(loaded.settings.server.idleTimeout == .seconds(60))
        #expect(loaded.source(of: "timeout") == .positional(name: "TIMEOUT"))
        await #expect(throws: SettingError.self) { try await SettingsLoader.load(arguments: ["4000", "5"], environment: [:]) }
        let mixed = await #expect(throws: SettingError.self) {
            try await SettingsLoader.load(arguments: ["4000", "5", "60", "--port", "1"], environment: [:])
        }
        #expect(mixed?.message.contains("not both") == true)
    }

    @Test("a bad value is one line naming the key, the value and its source")
    func badValues() async throws {
        func failure(_ arguments: [String], _ environment: [String: String] = [:]) async -> SettingError? {
            await #expect(throws: SettingError.self) { try await SettingsLoader.load(arguments: arguments, environment: environment) }
        }
        let env = await failure([], ["PARLEY_PORT": "abc"])
        #expect(env?.message == #"port must be an integer, got "abc" (environment variable PARLEY_PORT)"#)
        #expect(env?.exitCode == 78)
        let flag = await failure(["--block-duration", "0"])
        #expect(flag?.message == "block-duration must be 1-31536000 seconds, got \"0\" (command line --block-duration)")
        #expect(flag?.exitCode == 64)
        let level = try writeConfig(#"{"log-level": "loud"}"#, in: directory)
        let file = await failure(["--config", level])
        #expect(file?.message.hasPrefix("log-level must be one of") == true)
        #expect(file?.message.hasSuffix("(configuration file \(level))") == true)
        let typed = try writeConfig(#"{"port": "3331"}"#, in: directory, name: "typed.json")
        #expect(await failure(["--config", typed])?.message == "port must be an integer, got \"3331\" (configuration file \(typed))")
        #expect(await failure(["--prot", "1"])?.message.contains("unknown option --prot") == true)
        #expect(await failure(["--no-registration=yes"])?.message.contains("takes no value") == true)
    }

    @Test("unknown keys in the file, and unreadable files, are errors naming the file")
    func unknownKeys() async throws {
        let typo = try writeConfig(#"{"port": 1, "tiemout": 5}"#, in: directory)
        let error = await #expect(throws: SettingError.self) { try await SettingsLoader.load(arguments: ["--config", typo], environment: [:]) }
        #expect(error?.message == "unknown key \"tiemout\" in configuration file \(typo) (did you mean \"timeout\"?)")
        let nested = try writeConfig(#"{"tls": {"cert": "x"}}"#, in: directory, name: "nested.json")
        let nestedError = await #expect(throws: SettingError.self) {
            try await SettingsLoader.load(arguments: [], environment: ["PARLEY_CONFIG": nested])
        }
        #expect(nestedError?.message.hasPrefix("unknown key \"tls.cert\"") == true)
        let broken = try writeConfig(#"{"port": "#, in: directory, name: "broken.json")
        let brokenError = await #expect(throws: SettingError.self) { try await SettingsLoader.load(arguments: ["--config", broken], environment: [:]) }
        #expect(brokenError?.message.hasPrefix("cannot read configuration file \(broken)") == true)
    }

    @Test("the table has one key, variable and flag per setting, and a secret never gets a flag")
    func tableInvariants() {
        let table = ServerSettings.table
        #expect(Set(table.map(\.key)).count == table.count)
        #expect(Set(table.map(\.environmentVariable)).count == table.count)
        let flags = table.compactMap(\.flagName)
        #expect(Set(flags).count == flags.count)
        #expect(table.allSatisfy { !$0.secret || $0.flag == .none })
        let secret = Setting(
            key: "database-password", flag: .value("database-password"), type: .string, secret: true, valueName: "TEXT",
            help: "", read: { _ in "" }, write: { _, _ in nil }, copy: { _, _ in })
        #expect(secret.flag == .none, "a secret asked for a flag does not get one")
        #expect(secret.environmentVariable == "PARLEY_DATABASE_PASSWORD")
        #expect(ServerSettings.helpText.contains("--no-registration"))
    }

    @Test("a reload keeps non-reloadable settings and reports them; reloadable ones are copied")
    func restartNeeded() async throws {
        let running = try await SettingsLoader.load(arguments: ["--port", "1", "--timeout", "5"], environment: [:])
        let next = try await SettingsLoader.load(arguments: ["--port", "2", "--timeout", "9"], environment: [:])
        #expect(next.restartNeeded(comparedWith: running.settings) == ["port (1 -> 2)"])
    }
}
