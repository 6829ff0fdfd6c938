import Foundation
import NIOConcurrencyHelpers

/// A running `parley` binary (scripted mode) whose input is written line by line while it runs
/// and whose output is collected as it arrives.
public final class LiveParley: @unchecked Sendable {
    // `process` and the pipes are set once; output lines are guarded by the box.
    public let process = Process()
    private let stdin = Pipe()
    private let stdout = Pipe()
    private let output = NIOLockedValueBox<(lines: [String], partial: [UInt8])>(([], []))

    public convenience init(_ server: TestServer, _ name: String, arguments: [String] = []) throws {
        try self.init(port: server.port, caPath: server.certs.caPath, name, arguments: arguments)
    }

    public init(port: Int, caPath: String, _ name: String, arguments: [String] = []) throws {
        process.executableURL = ServerProcess.productURL("parley")
        process.arguments = ["--port", String(port), "--ca", caPath] + arguments
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stdout
        let output = self.output
        stdout.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            // EOF: stop the dispatch source before the pipe can be closed under it.
            if data.isEmpty { handle.readabilityHandler = nil }
            output.withLockedValue { state in
                for byte in data {
                    if byte == UInt8(ascii: "\n") {
                        state.lines.append(String(decoding: state.partial, as: UTF8.self))
                        state.partial = []
                    } else {
                        state.partial.append(byte)
                    }
                }
            }
        }
        try process.run()
        type(name, "password-\(name)")
    }

    deinit {
        // A dispatch source left on a pipe that closes with this object makes libdispatch crash.
        stdout.fileHandleForReading.readabilityHandler = nil
    }

    public var lines: [String] { output.withLockedValue { $0.lines } }

    public func type(_ lines: String...) {
        let text = lines.map { $0 + "\n" }.joined()
        try? stdin.fileHandleForWriting.write(contentsOf: Data(text.utf8))
    }

    /// Waits up to `timeout` seconds for an output line satisfying `predicate`.
    @discardableResult
    public func find(_ timeout: Double = 10, _ predicate: (String) -> Bool) async -> String? {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline {
            if let line = lines.first(where: predicate) { return line }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return lines.first(where: predicate)
    }

    public func waitFor(line: String, timeout: Double = 10) async -> Bool {
        await find(timeout) { $0 == line } != nil
    }

    /// The safety code shown for `user`, e.g. "123 456".
    public func safetyCode(with user: String) async -> String? {
        let prefix = "Safety code with \(user): "
        guard let line = await find(10, { $0.hasPrefix(prefix) }) else { return nil }
        return String(line.dropFirst(prefix.count).prefix(7))
    }

    public func kill() { Foundation.kill(process.processIdentifier, SIGKILL) }

    /// Closes input (the client logs out) and waits for the exit.
    public func finish(timeout: Double = 10) async -> Int32 {
        try? stdin.fileHandleForWriting.close()
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
