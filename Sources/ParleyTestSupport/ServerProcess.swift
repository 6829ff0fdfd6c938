import Foundation

/// The built `parley-server` executable on 127.0.0.1 with a port picked by the OS, fresh
/// certificates and its own database: for tests that must freeze the whole server (SIGSTOP),
/// which an in-process server cannot be.
public final class ServerProcess: @unchecked Sendable {
    // Set once in `start`; the test that owns it calls the rest sequentially.
    public let certs: TestCertificates
    public let port: Int
    private let process: Process

    private init(certs: TestCertificates, port: Int, process: Process) {
        self.certs = certs
        self.port = port
        self.process = process
    }

    /// A built executable of this package (next to the test bundle).
    public static func productURL(_ name: String) -> URL {
        let direct = Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name)
        if FileManager.default.fileExists(atPath: direct.path) { return direct }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Starts the server and waits (up to `timeout` seconds) until it logs the address it listens on.
    /// `database` is the `--db` value (default: a SQLite file in the server's own directory).
    public static func start(_ arguments: [String] = [], database: String? = nil, timeout: Double = 60) async throws
        -> ServerProcess
    {
        let certs = try TestCertificates.make()
        let logPath = certs.directory.appendingPathComponent("server.log").path
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else { throw ServerProcessError.noLog }
        let process = Process()
        process.executableURL = productURL("parley-server")
        process.arguments = [
            "--port", "0", "--cert", certs.certificatePath, "--key", certs.keyPath,
            "--db", database ?? certs.directory.appendingPathComponent("parley.sqlite").path, "--insecure-hash-cost", "10",
        ] + arguments
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        // Port 0: the server logs the one it got ("listening address=HOST:PORT").
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline, process.isRunning {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("listening") }),
                let range = line.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
                let port = Int(line[range].split(separator: ":").last!)
            {
                return ServerProcess(certs: certs, port: port, process: process)
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        process.terminate()
        throw ServerProcessError.notListening
    }

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
    public func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The server's log so far.
    public var log: String {
        (try? String(contentsOfFile: certs.directory.appendingPathComponent("server.log").path, encoding: .utf8)) ?? ""
    }

    /// A client connected over TLS (from `sourceAddress`, e.g. 127.0.0.2, when given).
    public func client(from sourceAddress: String? = nil) async throws -> TestChatClient {
        try await TestChatClient.connect(port: port, caPath: certs.caPath, sourceAddress: sourceAddress)
    }

    /// Whether the server process is still alive.
    public var isRunning: Bool { process.isRunning }

    /// Stops the server (thawing it first) and removes its files.
    public func stop() {
        resume()
        if process.isRunning {
            process.interrupt()
            process.waitUntilExit()
        }
        certs.remove()
    }

    public enum ServerProcessError: Error {
        case noLog, notListening
    }
}
