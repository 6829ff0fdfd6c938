import Foundation
import ParleyClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One thread for the whole session that runs blocking reads (the terminal, a pipe) one at a
/// time, so they never tie up Swift's small cooperative pool; the session asks for one line at
/// a time, so at most one job waits.
final class InputThread: @unchecked Sendable {
    // `condition` guards `jobs`; the thread is started once and lives until the process exits.
    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []

    init() {
        let thread = Thread { [condition] in
            while true {
                condition.lock()
                while self.jobs.isEmpty { condition.wait() }
                let job = self.jobs.removeFirst()
                condition.unlock()
                job()
            }
        }
        thread.name = "parley-input"
        thread.start()
    }

    /// Runs `body` on the input thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            condition.lock()
            jobs.append { continuation.resume(returning: body()) }
            condition.signal()
            condition.unlock()
        }
    }
}

/// Reads one line from fd 0 byte by byte (no stdio buffer, so it can share stdin with libedit).
/// Returns nil at end of input.
func readRawLine(fd: Int32 = STDIN_FILENO) -> String? {
    var bytes: [UInt8] = []
    var byte: UInt8 = 0
    while true {
        let n = read(fd, &byte, 1)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
        if byte == UInt8(ascii: "\n") { break }
        bytes.append(byte)
    }
    if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
    return String(decoding: bytes, as: UTF8.self)
}

/// Writes all of `text` to a file descriptor.
func writeAll(_ text: String, fd: Int32 = STDOUT_FILENO) {
    var text = text
    text.withUTF8 { buffer in
        var offset = 0
        while offset < buffer.count {
            let n = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}

/// The terminal's settings at startup, put back before the process exits (libedit changes them).
final class TerminalState: @unchecked Sendable {
    // Written once at init, read once at exit.
    private var saved = termios()
    private let valid: Bool

    init() { valid = isatty(STDIN_FILENO) == 1 && tcgetattr(STDIN_FILENO, &saved) == 0 }

    func restore() {
        guard valid else { return }
        var settings = saved
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &settings)
    }
}

/// Reads a password from the terminal with echo turned off.
func readPasswordWithoutEcho(prompt: String) -> String? {
    writeAll(prompt)
    var original = termios()
    guard tcgetattr(STDIN_FILENO, &original) == 0 else { return readRawLine() }
    var silent = original
    silent.c_lflag &= ~tcflag_t(ECHO)
    silent.c_lflag |= tcflag_t(ICANON)
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent)
    defer {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &original)
        writeAll("\n")
    }
    return readRawLine()
}

/// Input from a pipe or file: username, password, then one command per line. No prompts.
struct ScriptedInput: LineSource {
    private let reader = InputThread()
    var isInteractive: Bool { false }
    func readLine(prompt: String) async -> String? { await reader.run { readRawLine() } }
    func readSecret(prompt: String) async -> String? { await readLine(prompt: prompt) }
}

/// Output to a pipe or file: one line per write, serialised.
final class PlainOutput: OutputSink, @unchecked Sendable {
    private let lock = NSLock()
    func emit(_ lines: [String]) {
        let text = lines.joined(separator: "\n") + "\n"
        lock.withLock { writeAll(text) }
    }
}

/// Exits now; a thread may still be blocked reading the terminal, so no orderly unwinding.
func terminateProcess(_ status: Int32) -> Never {
    #if canImport(Glibc)
    Glibc.exit(status)
    #else
    Darwin.exit(status)
    #endif
}
