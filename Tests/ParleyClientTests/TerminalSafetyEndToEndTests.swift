import Foundation
import NIOConcurrencyHelpers
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import ParleyServer
import ParleyTestSupport
import ParleyTLS
import Testing

/// Output a library-driven client shows, collected for the test to wait on.
final class CollectedOutput: OutputSink {
    private let collected = NIOLockedValueBox<[String]>([])
    func emit(_ lines: [String]) { collected.withLockedValue { $0 += lines } }

    func waitFor(line: String, timeout: Double = 10) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline {
            if collected.withLockedValue({ $0.contains(line) }) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}

/// A hostile user on the real client library (TLS connection, a private link of its own), sending
/// text that would repaint a terminal if it were printed raw: no typed line could carry a newline.
struct Mallory {
    static let payload = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{1b}]2;owned\u{1b}\\\rbob: fake\u{9b}31m\u{202E}gnp.exe\nalice: forged"
    /// `payload` as the receiving screen must show it: first line, then its continuation.
    static let shown = ["^[[2J^[]0;owned^G^[]2;owned^[\\^Mbob: fake\\u{009B}31m\\u{202E}gnp.exe", "    | alice: forged"]
    static let byeReason = "mallory quit\u{1b}[2J\nSafety code with bob: 000 000"
    static let shownBye = ["Private messaging with mallory ended: mallory quit^[[2J", "    | Safety code with bob: 000 000"]

    let connection: ChatConnection

    init(_ server: TestServer) async throws {
        connection = try await ChatConnection.connect(
            host: "127.0.0.1", port: server.port, tlsContext: try server.certs.clientContext(), serverHostname: "localhost")
        guard try await connection.login(username: "mallory", password: "password-mallory") == .loggedIn(username: "mallory", created: true)
        else { throw TestChatClient.TestClientError.noReply("mallory's login") }
    }

    /// A message and a broadcast (tagged [m] and [b]), then a private session `accept` lets
    /// the receiver open, a private line ([p]), and a bye with a hostile reason.
    func attack(_ receiver: String, accept: () async -> Bool) async throws {
        #expect(try await connection.send(.message(to: receiver, text: "[m]" + Self.payload), timeout: .seconds(10)).outcome == .ok(.none))
        _ = try await connection.send(.broadcast(text: "[b]" + Self.payload), timeout: .seconds(10))
        let identity = try CertificateFactory.make(commonName: "mallory", kind: .peer, notAfter: 3600)
        let asked = try await connection.send(.startPrivate(user: receiver, fingerprint: Hex.encode(identity.fingerprint)), timeout: .seconds(10))
        #expect(asked.outcome == .ok(.none))
        #expect(await accept())
        var accepted: (host: String, port: UInt16, fingerprint: String, linkID: String)?
        for await event in connection.events {
            if case .privateAccepted(_, let host, let port, let fingerprint, let linkID) = event {
                accepted = (host, port, fingerprint, linkID)
                break
            }
        }
        guard let accepted, let pin = Hex.decode(accepted.fingerprint) else {
            Issue.record("\(receiver) did not accept")
            return
        }
        let link = try await PrivateLink.connect(
            host: accepted.host, port: Int(accepted.port), identity: identity,
            expecting: PrivatePeerExpectation(fingerprint: pin, linkID: accepted.linkID))
        try await link.send("[p]" + Self.payload)
        await link.close(reason: Self.byeReason)
    }
}

/// The receiving screen's lines for the three paths plus the bye, in order.
let expectedHumanLines: [String] = ["mallory: [m]", "mallory: [b]", "mallory(private): [p]"]
    .flatMap { [$0 + Mallory.shown[0], Mallory.shown[1]] } + Mallory.shownBye

@Suite("network text never drives the terminal: real binaries, server and TLS", .serialized)
struct TerminalSafetyEndToEndTests {
    @Test func humanOutputShowsControlsVisiblyAndIndentsForgedLines() async throws {
        try await withTestServer { server in
            let bob = try LiveParley(server, "bob")
            #expect(await bob.waitFor(line: "Welcome to the greatest messaging application ever!"))
            let mallory = try await Mallory(server)
            try await mallory.attack("bob") {
                guard await bob.waitFor(line: "mallory would like to private message, enter y or n:") else { return false }
                bob.type("y")
                return true
            }
            for line in expectedHumanLines { #expect(await bob.waitFor(line: line), "\(line)") }
            #expect(await bob.finish() == 0)
            let lines = bob.lines
            let after = lines.drop { !$0.hasPrefix("mallory: [m]") }
            #expect(Array(after.prefix(4)) == Array(expectedHumanLines.prefix(4)))
            #expect(!lines.contains { $0.unicodeScalars.contains(where: isUnsafeOnTerminal) })
            #expect(!lines.contains { $0.hasPrefix("alice:") || $0.hasPrefix("Safety code with bob") })
        }
    }

    @Test func jsonOutputCarriesTheExactTextAsInertEscapes() async throws {
        try await withTestServer { server in
            let bob = try LiveParley(server, "bob", arguments: ["--json"])
            #expect(await bob.find { $0.contains(#""command":"login""#) } != nil)
            let mallory = try await Mallory(server)
            try await mallory.attack("bob") {
                guard await bob.waitFor(line: #"{"event":"privaterequest","from":"mallory"}"#) else { return false }
                bob.type("y")
                return true
            }
            #expect(await bob.find { $0.contains(#""event":"privatestopped""#) } != nil)
            #expect(await bob.finish() == 0)
            let objects = bob.lines.compactMap { line -> [String: JSONValue]? in
                guard case .object(let o)? = try? JSONReader.parse(Array(line.utf8)) else { return nil }
                return o
            }
            #expect(objects.count == bob.lines.count)
            func text(of event: String) -> JSONValue? { objects.first { $0["event"] == .string(event) }?["text"] }
            #expect(text(of: "message") == .string("[m]" + Mallory.payload))
            #expect(text(of: "broadcast") == .string("[b]" + Mallory.payload))
            #expect(text(of: "private") == .string("[p]" + Mallory.payload))
            #expect(objects.first { $0["event"] == .string("privatestopped") }?["reason"] == .string(Mallory.byeReason))
            #expect(!bob.lines.contains { $0.unicodeScalars.contains(where: isUnsafeOnTerminal) })
        }
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/script")))
    func lineEditorOnAPseudoTerminalShowsControlsVisibly() async throws {
        try await withTestServer { server in
            let bob = try TerminalParley(server)
            #expect(await bob.logIn("bob"))
            let mallory = try await Mallory(server)
            try await mallory.attack("bob") {
                guard await bob.waitFor("mallory would like to private message, enter y or n:") else { return false }
                bob.type("y")
                return true
            }
            #expect(await bob.waitFor(Mallory.shownBye[1]))
            bob.type("logout")
            _ = await bob.finish()
            let screen = bob.text
            // What libedit itself writes (prompt redraws, ONLCR's CRs) is allowed; the attacker's bytes are not.
            for raw in ["\u{1b}[2J", "\u{1b}]0;owned", "\u{1b}]2;owned", "owned\u{7}", "\u{9b}", "\u{202E}", "\rbob: fake"] {
                #expect(!screen.contains(raw), "\(raw.debugDescription)")
            }
            // Each line, as the terminal shows it: what follows the last CR and the erase-line code.
            // (By scalars: Swift's "\r\n" is one Character, which a split on "\n" would not see.)
            let shownLines = screen.unicodeScalars.split(separator: "\n").map { line -> String in
                let afterCR = line.split(separator: "\r").last.map { String(String.UnicodeScalarView($0)) } ?? ""
                return afterCR.replacingOccurrences(of: "\u{1b}[K", with: "")
            }
            for line in expectedHumanLines { #expect(shownLines.contains(line), "\(line)") }
            #expect(!shownLines.contains { $0.hasPrefix("alice:") || $0.hasPrefix("Safety code with bob") })
        }
    }
}

/// The real `parley` binary on a pseudo-terminal (through script(1)), so it runs its libedit line
/// editor and prints as it does for a person; the output is kept as the raw bytes the terminal got.
final class TerminalParley: @unchecked Sendable {
    // `process` and the pipes are set once; the output is guarded by its box.
    private let process = Process()
    private let stdin = Pipe()
    private let stdout = Pipe()
    private let output = NIOLockedValueBox<[UInt8]>([])

    init(_ server: TestServer) throws {
        let command = [ParleyRun.binary.path, "--port", String(server.port), "--ca", server.certs.caPath]
            .map { "'" + $0.replacingOccurrences(of: "'", with: #"'\''"#) + "'" }.joined(separator: " ")
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        process.arguments = ["-qfec", command, "/dev/null"]
        var environment = ProcessInfo.processInfo.environment
        environment["TERM"] = "xterm"
        process.environment = environment
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stdout
        let output = self.output
        stdout.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            // EOF: stop the dispatch source before the pipe can be closed under it.
            if data.isEmpty { handle.readabilityHandler = nil }
            output.withLockedValue { $0 += data }
        }
        try process.run()
    }

    deinit {
        // A dispatch source left on a pipe that closes with this object makes libdispatch crash.
        stdout.fileHandleForReading.readabilityHandler = nil
    }

    var text: String { String(decoding: output.withLockedValue { $0 }, as: UTF8.self) }

    func type(_ line: String) { try? stdin.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8)) }

    func waitFor(_ fragment: String, timeout: Double = 10) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while ContinuousClock.now < deadline {
            if text.contains(fragment) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return text.contains(fragment)
    }

    /// Answers the prompts. The password prompt flushes pending input as it turns echo off, so a
    /// password typed just before that is lost: it is typed again until the login goes through.
    func logIn(_ name: String) async -> Bool {
        guard await waitFor("Username: ") else { return false }
        type(name)
        guard await waitFor("Password: ") else { return false }
        for _ in 0..<5 {
            type("password-\(name)")
            if await waitFor("Welcome to the greatest messaging application ever!", timeout: 3) { return true }
        }
        return false
    }

    func finish(timeout: Double = 10) async -> Int32 {
        try? stdin.fileHandleForWriting.close()
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
