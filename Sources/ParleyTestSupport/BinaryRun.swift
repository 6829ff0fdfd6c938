import Foundation

/// The outcome of running a built executable to completion (or to its deadline) in a test.
public struct BinaryRun: Sendable {
    public var status: Int32
    /// Standard output, with standard error merged in unless `separateStderr` was asked for.
    public var output: String
    /// Standard error when it was kept apart, else empty.
    public var errors: String

    /// Runs `executable` with `arguments` (and `environment` added to the test's), feeding `stdin` (nil: /dev/null). With `holdStdinOpen`,
    /// stdin stays open until the process exits on its own (e.g. a server times it out). A process
    /// still running after `timeout` seconds is terminated.
    public static func run(
        _ executable: URL, _ arguments: [String], stdin: String? = "", holdStdinOpen: Bool = false,
        separateStderr: Bool = false, environment: [String: String] = [:], timeout: Double
    ) async throws -> BinaryRun {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = separateStderr ? err : out
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            try input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8))
            if !holdStdinOpen { try input.fileHandleForWriting.close() }
        }
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        if stdin != nil, holdStdinOpen { try? input.fileHandleForWriting.close() }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errText = separateStderr ? String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) : ""
        return BinaryRun(status: process.terminationStatus, output: text, errors: errText)
    }
}

/// Polls until `condition` holds or `seconds` pass; returns whether it held.
public func eventually(_ seconds: Double = 5, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}
