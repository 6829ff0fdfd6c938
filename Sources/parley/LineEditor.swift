import CLibEdit
import Foundation
import ParleyClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// libedit's el_set and history are C variadic functions, which Swift cannot call directly. We look
// them up once and call them through fixed-arity pointer types. That matches the C calling
// convention on the platforms we ship (x86_64 SysV and arm64 Linux pass these integer/pointer
// arguments in the same registers either way).
private typealias ElSet1 = @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer?) -> Int32
private typealias ElSet3 = @convention(c) (OpaquePointer?, Int32, UnsafeRawPointer?, UnsafeRawPointer?, UnsafeRawPointer?) -> Int32
private typealias HistoryInt = @convention(c) (OpaquePointer?, UnsafeMutablePointer<HistEvent>?, Int32, Int32) -> Int32
private typealias HistoryString = @convention(c) (OpaquePointer?, UnsafeMutablePointer<HistEvent>?, Int32, UnsafePointer<CChar>?) -> Int32
private typealias PromptFunction = @convention(c) (OpaquePointer?) -> UnsafeMutablePointer<CChar>?
private typealias CompleteFunction = @convention(c) (OpaquePointer?, Int32) -> UInt8

private struct LibEditSymbols {
    let elSet: UnsafeMutableRawPointer
    let history: UnsafeMutableRawPointer

    static func load() -> LibEditSymbols? {
        guard let handle = dlopen(nil, RTLD_NOW),
              let elSet = dlsym(handle, "el_set"), let history = dlsym(handle, "history")
        else { return nil }
        return LibEditSymbols(elSet: elSet, history: history)
    }

    func set(_ el: OpaquePointer, _ op: Int32, _ a: UnsafeRawPointer? = nil) {
        _ = unsafeBitCast(elSet, to: ElSet1.self)(el, op, a)
    }

    func set(_ el: OpaquePointer, _ op: Int32, _ a: UnsafeRawPointer?, _ b: UnsafeRawPointer?, _ c: UnsafeRawPointer?) {
        _ = unsafeBitCast(elSet, to: ElSet3.self)(el, op, a, b, c)
    }
}

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
    // `el`/`history` are used by one reading thread at a time; `outputLock` serialises output and
    // the "is a line being edited" flag, so async messages know whether to redraw the prompt.
    private let el: OpaquePointer
    private let historyHandle: OpaquePointer
    private let symbols: LibEditSymbols
    private let outputLock = NSLock()
    private var editing = false

    var isInteractive: Bool { true }

    /// Returns nil if libedit cannot be set up (then the caller falls back to plain input).
    init?() {
        guard let symbols = LibEditSymbols.load(),
              let input = fdopen(STDIN_FILENO, "r"), let output = fdopen(STDOUT_FILENO, "w"),
              let errors = fdopen(STDERR_FILENO, "w"),
              let el = el_init("parley", input, output, errors), let history = history_init()
        else { return nil }
        self.el = el
        self.historyHandle = history
        self.symbols = symbols
        var event = HistEvent()
        _ = unsafeBitCast(symbols.history, to: HistoryInt.self)(history, &event, H_SETSIZE, 1000)
        symbols.set(el, EL_EDITOR, "emacs")
        symbols.set(el, EL_SIGNAL, UnsafeRawPointer(bitPattern: 1))
        symbols.set(el, EL_PROMPT, unsafeBitCast(promptCallback, to: UnsafeRawPointer.self))
        symbols.set(el, EL_HIST, symbols.history, UnsafeRawPointer(history), nil)
        symbols.set(el, EL_ADDFN, "parley-complete", "Complete command or user name",
                    unsafeBitCast(completeCallback, to: UnsafeRawPointer.self))
        symbols.set(el, EL_BIND, "^I", "parley-complete", nil)
    }

    /// Names offered when completing a username argument.
    func setUsers(_ users: Set<String>) {
        shared.lock.withLock { shared.users = users }
    }

    func readLine(prompt: String) async -> String? {
        await onDedicatedThread { self.blockingReadLine(prompt: prompt) }
    }

    func readSecret(prompt: String) async -> String? {
        await onDedicatedThread { readPasswordWithoutEcho(prompt: prompt) }
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
        if !line.trimmingCharacters(in: .whitespaces).isEmpty {
            var event = HistEvent()
            _ = unsafeBitCast(symbols.history, to: HistoryString.self)(historyHandle, &event, H_ENTER, line)
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
            symbols.set(el, EL_REFRESH)
        }
    }
}
