import Foundation

/// The built `parley-server` executable on 127.0.0.1 with a port picked by the OS, fresh
/// certificates and its own database: for tests that must freeze the whole server (SIGSTOP),
/// which an in-process server cannot be.
public final class ServerProcess: @unchecked Sendable {
    // Set once in `start`; the test that owns it calls the rest sequentially.
    public let certs: TestCertificates
    public let port: Int
    /// The database file the server uses.
    public let databasePath: String
    /// Where its standard output and error go.
    public let logPath: String
    private let process: Process
    /// Whether `stop` removes the certificates' directory (not when the caller passed them in).
    private let ownsFiles: Bool

    private init(certs: TestCertificates, port: Int, databasePath: String, logPath: String, process: Process, ownsFiles: Bool) {
        self.certs = certs
        self.port = port
        self.databasePath = databasePath
        self.logPath = logPath
        self.process = process
        self.ownsFiles = ownsFiles
    }

    /// A built executable of this package (next to the test bundle).
    public static func productURL(_ name: String) -> URL {
        let direct = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: direct.path) { return direct }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Starts the server and waits (up to `timeout` seconds) until it logs the address it listens on.
    /// By default it gets fresh certificates, its own database and a port picked by the OS; a
    /// restart passes the old one's `certs`, `database` and `port`, and a second server trusted by
    /// the same clients passes `certs` with a database of its own (`name` keeps their files apart).
    /// Passed-in `certs` stay in place at `stop`. `environment` is added to the test's own. Without
    /// `standardFlags`, `arguments` are the whole command line (port, files, hash cost). `raisedLimits`
    /// lifts the per-address and command limits (tests open many connections from 127.0.0.1).
    public static func start(
        _ arguments: [String] = [], environment: [String: String] = [:], certs given: TestCertificates? = nil,
        database: String? = nil, port: Int = 0, name: String = "parley", standardFlags: Bool = true, raisedLimits: Bool = true,
        timeout: Double = 60
    ) async throws -> ServerProcess {
        let certs = try given ?? TestCertificates.make()
        let logPath = certs.directory.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8)).log").path
        let databasePath = database ?? certs.directory.appendingPathComponent("\(name).sqlite").path
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else { throw ServerProcessError.noLog }
        let process = Process()
        process.executableURL = productURL("parley-server")
        let standard = [
            "--port", String(port), "--cert", certs.certificatePath, "--key", certs.keyPath,
            "--db", databasePath, "--insecure-hash-cost", "10",
        ]
        process.arguments = (standardFlags ? standard + (raisedLimits ? Self.loadTestingLimits : []) : []) + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()
        // Port 0: the server logs the one it got ("listening address=HOST:PORT").
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline, process.isRunning {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("listening") && $0.contains("tls=") }),
                let range = line.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
                let port = Int(line[range].split(separator: ":").last!)
            {
                return ServerProcess(certs: certs, port: port, databasePath: databasePath, logPath: logPath,
                                     process: process, ownsFiles: given == nil)
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        throw ServerProcessError.notListening(log: (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
    }

    /// The flags that raise the per-address and per-connection limits for tests that open many
    /// connections or send many commands from 127.0.0.1 (later flags in `arguments` win).
    public static let loadTestingLimits = [
        "--max-connections-per-address", "1000000", "--max-new-connections-per-minute", "100000000",
        "--commands-per-second", "100000000", "--command-burst", "100000000", "--max-registrations-per-hour", "100000000",
    ]


    /// Freezes the whole process: it neither reads nor answers until `resume()`. Returns once
    /// every thread has stopped (the signal is asynchronous), or after `timeout` seconds.
    @discardableResult
    public func pause(timeout: Double = 10) async -> Bool {
        kill(process.processIdentifier, SIGSTOP)
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline {
            if allThreadsStopped() { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return allThreadsStopped()
    }

    /// Linux: every task of the process is in state T (stopped). Elsewhere the check is skipped.
    private func allThreadsStopped() -> Bool {
        let tasks = "/proc/\(process.processIdentifier)/task"
        guard let ids = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return true }
        return ids.allSatisfy { id in
            guard let stat = try? String(contentsOfFile: "\(tasks)/\(id)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return true }
            let state = stat[stat.index(after: close)...].split(separator: " ").first
            return state == "T" || state == "t"
        }
    }

    public func resume() { kill(process.processIdentifier, SIGCONT) }

    /// Kills the server with SIGKILL (a crash: no logout, no goodbye) and waits for it to die.
    public func kill9() { crash() }

    /// A client connected over TLS (from `sourceAddress`, e.g. 127.0.0.2, when given).
    public func client(from sourceAddress: String? = nil) async throws -> TestChatClient {
        try await TestChatClient.connect(port: port, caPath: certs.caPath, sourceAddress: sourceAddress)
    }

    /// Stops the server (thawing it first) and removes its files unless they were passed in.
    public func stop() {
        resume()
        if process.isRunning {
            process.interrupt()
            process.waitUntilExit()
        }
        if ownsFiles { certs.remove() }
    }

    /// Kills the server with SIGKILL (a crash: nothing is flushed, closed or removed) and waits
    /// until it is gone.
    public func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The same as `crash()`: SIGKILL, and the certificates and database stay for a restart.
    public func killHard() { crash() }

    /// Whether the process is still running.
    public var isRunning: Bool { process.isRunning }

    /// The process's exit status once it has exited (waits for it).
    public func waitForExit() -> Int32 {
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Everything the server logged so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends `signal` (SIGHUP, SIGTERM...) to the server.
    public func send(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// The exit status once the process ends within `timeout` seconds, else nil (it keeps running).
    public func waitForExit(timeout: Double) async -> Int32? {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Waits up to `timeout` seconds until the log holds `text` `count` times or more.
    public func waitForLog(_ text: String, count: Int = 1, timeout: Double = 10) async -> Bool {
        await eventually(timeout) { self.log.components(separatedBy: text).count - 1 >= count }
    }

    public enum ServerProcessError: Error {
        case noLog
        case notListening(log: String)
    }
}
