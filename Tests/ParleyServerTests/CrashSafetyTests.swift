import Foundation
import NIOConcurrencyHelpers
import ParleyProtocol
import ParleyTestSupport
import SQLiteNIO
import Testing

/// What the clients were told, and so what must hold after any crash.
private struct Ledger {
    /// Messages whose sender got `ok` while the recipient was offline: the reply says it was stored.
    var stored: [String: Set<String>] = [:]
    /// Stored messages whose recipient's `ack` got `ok`: they must never come again.
    var acked: [String: Set<String>] = [:]
    /// Stored messages whose recipient sent an `ack` (answered or not): the server may have
    /// deleted them, since the recipient did see them.
    var ackSent: [String: Set<String>] = [:]
    /// Every message text ever sent, by recipient (stored or not), to tell stray rows from real ones.
    var sent: [String: Set<String>] = [:]
    /// Names whose registration the client saw succeed.
    var registered: Set<String> = []
    /// Block state the client last saw confirmed, by "blocker>blocked"; nil while a change is unanswered.
    var blocks: [String: Bool?] = [:]
    /// Deliveries seen after a restart and checked against the ledger (to show the check ran).
    var deliveriesChecked = 0
    /// Messages stored in the round under way (the kill waits for traffic to flow).
    var storedThisRound = 0

    /// What a complete delivery (or the file) must contain for `recipient`.
    func expected(_ recipient: String) -> Set<String> {
        stored[recipient, default: []].subtracting(ackSent[recipient, default: []])
    }
}

private let recipients = ["r0", "r1", "r2", "r3"]
private let senders = ["s0", "s1"]
private let blockTargets = ["x0", "x1"]

private func password(_ name: String) -> String { "password-\(name)" }

/// A seeded generator, so a failing run can be repeated with PARLEY_CRASH_SEED.
private struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("crash safety: the real server killed with SIGKILL at random moments", .serialized)
struct CrashSafetyTests {
    @Test(.timeLimit(.minutes(3)))
    func whatTheClientsWereToldSurvivesKill9() async throws {
        let seed = ProcessInfo.processInfo.environment["PARLEY_CRASH_SEED"].flatMap(UInt64.init) ?? UInt64.random(in: 0...UInt64.max)
        var random = SplitMix64(state: seed)
        let rounds = 24
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let ledger = NIOLockedValueBox(Ledger())
        let started = ContinuousClock.now

        // The accounts, made on a server that stops cleanly.
        let setup = try await ServerProcess.start(certs: certs)
        for name in recipients + senders + blockTargets {
            let client = try await TestChatClient.connect(port: setup.port, caPath: certs.caPath)
            #expect(try await client.login(name, password(name)).isOK)
            await client.close()
        }
        setup.stop()

        for round in 0..<rounds {
            // One event loop: the test shares the machine with the rest of the suite.
            let server = try await ServerProcess.start(["--threads", "1"], certs: certs)
            // Two recipients log in (their stored messages are checked, then acked); the other two
            // stay offline and are written to, so every `ok` a sender gets means "stored".
            let readers = [recipients[round % 4], recipients[(round + 1) % 4]]
            let offline = recipients.filter { !readers.contains($0) }
            let killAfter = Int.random(in: 0...400, using: &random)
            ledger.withLockedValue { $0.storedThisRound = 0 }
            await withTaskGroup(of: Void.self) { group in
                for reader in readers { group.addTask { await readAndAck(reader, server, ledger) } }
                for sender in senders { group.addTask { await sendAndBlock(sender, to: offline, round, server, ledger) } }
                group.addTask { await register(round, server, ledger) }
                group.addTask {
                    // The random moment is counted from the first stored message, so that a slow
                    // (loaded) machine still kills the server in the middle of traffic, not before it.
                    _ = await eventually(10) { ledger.withLockedValue { $0.storedThisRound > 0 } }
                    try? await Task.sleep(for: .milliseconds(killAfter))
                    server.crash()
                }
            }
            try await checkFile(server.databasePath, ledger, context: "seed \(seed), round \(round), kill after \(killAfter) ms")
        }

        // A last clean start: every recipient gets exactly what it is owed, whatever round it was owed in.
        let last = try await ServerProcess.start(certs: certs)
        for name in recipients { await readAndAck(name, last, ledger, complete: true) }
        for name in ledger.withLockedValue({ $0.registered }) {
            let client = try await TestChatClient.connect(port: last.port, caPath: certs.caPath)
            #expect(try await client.login(name, password(name)).outcome == .ok(.login(username: name, created: false)),
                    "registration of \(name) survived (seed \(seed))")
            await client.close()
        }
        last.stop()
        try await checkFile(last.databasePath, ledger, context: "seed \(seed), after the last clean stop")

        let totals = ledger.withLockedValue { l in
            (l.stored.values.map(\.count).reduce(0, +), l.acked.values.map(\.count).reduce(0, +), l.registered.count,
             l.deliveriesChecked)
        }
        print("crash test: seed \(seed), stored \(totals.0), acked \(totals.1), registered \(totals.2), deliveries checked \(totals.3)")
        // The run did real work in every category, or it proves nothing.
        // Every round stored at least one message before its kill; the last clean start checks all
        // four recipients, so more than four deliveries checked means some were checked between kills.
        #expect(totals.0 >= rounds && totals.1 > 0 && totals.2 > 0 && totals.3 > recipients.count,
                "stored \(totals.0), acked \(totals.1), registered \(totals.2), deliveries checked \(totals.3) (seed \(seed))")
        #expect(ContinuousClock.now - started < .seconds(120), "the crash test should take about a minute at most")
    }
}

/// Logs in, checks the stored messages against the ledger once all have arrived (a `whoelse`
/// answered after them marks the end), then acks each; stops quietly when the server dies.
private func readAndAck(_ name: String, _ server: ServerProcess, _ ledger: NIOLockedValueBox<Ledger>, complete: Bool = false) async {
    guard let client = try? await TestChatClient.connect(port: server.port, caPath: server.certs.caPath) else { return }
    defer { Task { await client.close() } }
    guard let login = try? await client.login(name, password(name)), login.isOK else {
        if complete { Issue.record("\(name) could not log in after a clean start") }
        return
    }
    // The server sends every stored message before it answers a later request.
    guard let sync = try? await client.request(.whoelse), sync.isOK else { return }
    let deliveries: [(text: String, id: Int64)] = client.received.compactMap {
        guard case .message(_, let text, let delivery?, _) = $0 else { return nil }
        return (text, delivery)
    }
    let texts = Set(deliveries.map(\.text))
    ledger.withLockedValue { l in
        let missing = l.expected(name).subtracting(texts)
        let again = texts.intersection(l.acked[name, default: []])
        let unknown = texts.subtracting(l.sent[name, default: []])
        #expect(missing.isEmpty, "\(name): stored (sender got ok) but not delivered: \(missing.sorted())")
        #expect(again.isEmpty, "\(name): acked (ok) but delivered again: \(again.sorted())")
        #expect(unknown.isEmpty, "\(name): delivered but never sent: \(unknown.sorted())")
        #expect(texts.count == deliveries.count, "\(name): a message came twice in one login")
        l.deliveriesChecked += 1
    }
    for delivery in deliveries {
        ledger.withLockedValue { _ = $0.ackSent[name, default: []].insert(delivery.text) }
        guard let reply = try? await client.request(.ack(delivery: delivery.id)) else { return }
        #expect(reply.isOK, "ack of \(delivery.text): \(reply)")
        if reply.isOK { ledger.withLockedValue { _ = $0.acked[name, default: []].insert(delivery.text) } }
    }
    if !complete { _ = await client.waitForClose(timeout: 10) }
}

/// Sends to offline recipients without pause, toggling a block every few messages.
private func sendAndBlock(_ name: String, to offline: [String], _ round: Int, _ server: ServerProcess,
                          _ ledger: NIOLockedValueBox<Ledger>) async {
    guard let client = try? await TestChatClient.connect(port: server.port, caPath: server.certs.caPath),
        let login = try? await client.login(name, password(name)), login.isOK
    else { return }
    defer { Task { await client.close() } }
    var sequence = 0
    while true {
        sequence += 1
        let recipient = offline[sequence % offline.count]
        let text = "m\(round)-\(name)-\(sequence)"
        ledger.withLockedValue { _ = $0.sent[recipient, default: []].insert(text) }
        guard let reply = try? await client.request(.message(to: recipient, text: text)) else { return }
        #expect(reply.isOK, "message to offline \(recipient): \(reply)")
        if reply.isOK {
            ledger.withLockedValue { l in
                l.stored[recipient, default: []].insert(text)
                l.storedThisRound += 1
            }
        }

        guard sequence % 4 == 0 else { continue }
        let target = blockTargets[(sequence / 4) % blockTargets.count]
        let key = "\(name)>\(target)"
        let block = ledger.withLockedValue { l -> Bool in
            let current: Bool? = switch l.blocks[key] {
            case nil: false  // never blocked
            case .some(let state): state  // nil: an earlier change went unanswered
            }
            l.blocks[key] = .some(nil)  // unknown until answered
            return !(current ?? false)
        }
        guard let answer = try? await client.request(block ? .block(user: target) : .unblock(user: target)) else { return }
        let state: Bool? = switch answer.code {
        case nil: block
        case .alreadyBlocked?: true
        case .notBlocked?: false
        default: nil
        }
        #expect(state != nil, "block change answered \(answer)")
        ledger.withLockedValue { $0.blocks[key] = .some(state) }
    }
}

/// Registers new names one after another.
private func register(_ round: Int, _ server: ServerProcess, _ ledger: NIOLockedValueBox<Ledger>) async {
    var number = 0
    while true {
        number += 1
        let name = "n\(round)x\(number)"
        guard let client = try? await TestChatClient.connect(port: server.port, caPath: server.certs.caPath) else { return }
        guard let reply = try? await client.login(name, password(name)) else { return }
        #expect(reply.outcome == .ok(.login(username: name, created: true)), "registration of \(name): \(reply)")
        if case .ok(.login(_, true)) = reply.outcome { ledger.withLockedValue { _ = $0.registered.insert(name) } }
        await client.close()
    }
}

/// Opens the file the dead server left (SQLite recovers its WAL) and checks it against the ledger.
private func checkFile(_ path: String, _ ledger: NIOLockedValueBox<Ledger>, context: String) async throws {
    let connection = try await SQLiteConnection.open(storage: .file(path: path))
    do {
        let check = try await connection.query("PRAGMA quick_check").compactMap { $0.column("quick_check")?.string }
        #expect(check == ["ok"], "quick_check: \(check) (\(context))")
        var queued: [String: Set<String>] = [:]
        for row in try await connection.query("SELECT recipient, body FROM offline_messages") {
            if let recipient = row.column("recipient")?.string, let body = row.column("body")?.string {
                queued[recipient, default: []].insert(body)
            }
        }
        let accounts = Set(try await connection.query("SELECT name FROM accounts").compactMap { $0.column("name")?.string })
        let blocks = Set(try await connection.query("SELECT blocker, blocked FROM blocks").compactMap { row -> String? in
            guard let blocker = row.column("blocker")?.string, let blocked = row.column("blocked")?.string else { return nil }
            return "\(blocker)>\(blocked)"
        })
        ledger.withLockedValue { l in
            for name in recipients {
                let missing = l.expected(name).subtracting(queued[name, default: []])
                let again = queued[name, default: []].intersection(l.acked[name, default: []])
                #expect(missing.isEmpty, "\(name): stored (sender got ok) but not in the file: \(missing.sorted()) (\(context))")
                #expect(again.isEmpty, "\(name): acked (ok) but still queued: \(again.sorted()) (\(context))")
            }
            let lost = l.registered.subtracting(accounts)
            #expect(lost.isEmpty, "registrations seen to succeed but missing: \(lost.sorted()) (\(context))")
            for (key, state) in l.blocks {
                guard let known = state else { continue }  // unanswered when the server died: either is fine
                #expect(blocks.contains(key) == known, "block \(key) confirmed as \(known) (\(context))")
            }
        }
    } catch {
        try? await connection.close()
        throw error
    }
    try await connection.close()
}
