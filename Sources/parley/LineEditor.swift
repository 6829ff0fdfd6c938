import CLibEdit
import Foundation
import ParleyClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private typealias PromptFunction = @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
private typealias CompleteFunction = @convention(c) (OpaquePointer?, Int32) -> UInt8

/// What the C callbacks need; they cannot capture context, so there is exactly one, global.
private final class EditorShared: @unchecked Sendable {
    // `lock` guards prompt and users; the C strings are replaced, never mutated in place.
    let lock = NSLock()
    var prompt: UnsafeMutablePointer<CChar> = strdup("> ")
    var users: Set<String> = []
}

private let shared = EditorShared()

private let promptCallback: PromptFunction = { _ in shared.lock.withLock { shared.prompt } }

private let completeCallback: CompleteFunction = { el, _ in
    guard let el, let info = el_line(el) else { return UInt8(CC_ERROR) }
    let start = UnsafeRawPointer(info.pointee.buffer)!
    let count = UnsafeRawPointer(info.pointee.cursor)! - start
    let before = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    let users = shared.lock.withLock { shared.users }
    let result = Completion.candidates(beforeCursor: before, users: users)
    switch result.candidates.count {
    case 0:
        return UInt8(CC_ERROR)
    case 1:
        _ = el_insertstr(el, result.commonSuffix + " ")
        return UInt8(CC_REFRESH)
    default:
        let suffix = result.commonSuffix
        if !suffix.isEmpty {
            _ = el_insertstr(el, suffix)
            return UInt8(CC_REFRESH)
        }
        // Nothing more in common: list the choices under the line, then redraw it. User names came
        // off the network, so the list is printed like any other untrusted text.
        writeAll("\r\n" + TerminalText(result.candidates.joined(separator: "  ")).lines.joined(separator: "\r\n") + "\r\n")
        return UInt8(CC_REDISPLAY)
    }
}

/// The interactive terminal: a libedit line editor with history and tab completion, and output
/// that appears above the line being typed without mangling it.
final class LineEditor: LineSource, OutputSink, @unchecked Sendable {
    // `el`/`history` are used by the one input thread; `outputLock` serialises output and the
    // "is a line being edited" flag, so async messages know whether to redraw the prompt.
    private let el: OpaquePointer
    private let historyHandle: OpaquePointer
    private let reader = InputThread()
    private let outputLock = NSLock()
    private var editing = false

    var isInteractive: Bool { true }

    /// Returns nil if libedit cannot be set up (then the caller falls back to plain input).
    init?() {
        guard let input = fdopen(STDIN_FILENO, "r"), let output = fdopen(STDOUT_FILENO, "w"),
              let errors = fdopen(STDERR_FILENO, "w"),
              let el = el_init("parley", input, output, errors), let history = history_init()
        else { return nil }
        self.el = el
        self.historyHandle = history
        var event = HistEvent()
        _ = parley_history_set_size(history, &event, 1000)
        _ = parley_el_set_editor(el, "emacs")
        _ = parley_el_set_signal(el, 1)
        _ = parley_el_set_prompt(el, promptCallback)
        _ = parley_el_set_history(el, history)
        _ = parley_el_add_function(el, "parley-complete", "Complete command or user name", completeCallback)
        _ = parley_el_bind(el, "^I", "parley-complete")
    }

    /// Names offered when completing a username argument.
    func setUsers(_ users: Set<String>) {
        shared.lock.withLock { shared.users = users }
    }

    func readLine(prompt: String) async -> String? {
        await reader.run { self.blockingReadLine(prompt: prompt) }
    }

    func readSecret(prompt: String) async -> String? {
        await reader.run { readPasswordWithoutEcho(prompt: prompt) }
    }

    private func blockingReadLine(prompt: String) -> String? {
        let newPrompt = strdup(prompt)!
        let old = shared.lock.withLock { () -> UnsafeMutablePointer<CChar> in
            defer { shared.prompt = newPrompt }
            return shared.prompt
        }
        free(old)
        outputLock.withLock { editing = true }
        var count: Int32 = 0
        let raw = el_gets(el, &count)
        outputLock.withLock { editing = false }
        guard let raw, count > 0 else { return nil }
        var line = String(cString: raw)
        while line.hasSuffix("\n") || line.hasSuffix("\r") { line.removeLast() }
        if !line.trimmingCharacters(in: .whitespaces).isEmpty, !UserCommand.keepsOutOfHistory(line) {
            var event = HistEvent()
            _ = parley_history_enter(historyHandle, &event, line)
        }
        return line
    }

    /// Moves off a half-typed line so the shell prompt starts on a fresh line after exit.
    func finish() {
        outputLock.withLock { if editing { writeAll("\r\n") } }
    }

    func emit(_ lines: [String]) {
        outputLock.withLock {
            guard editing else {
                writeAll(lines.joined(separator: "\n") + "\n")
                return
            }
            // Clear the prompt line, print above it, then have libedit redraw prompt and typed text.
            let text = lines.map { "\r\u{1b}[K" + $0 + "\r\n" }.joined()
            writeAll(text)
            _ = parley_el_refresh(el)
        }
    }
}
