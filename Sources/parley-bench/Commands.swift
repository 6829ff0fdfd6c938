// parley-bench: load generator and measurements for Parley (see docs/BENCH-TOOL.md).
//
// One process, ONE event loop thread for all connections (the machine has 2 cores shared with the
// server). Frames are scanned by bytes; no Foundation JSON anywhere near the hot paths.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Dispatch
import Foundation
import Histogram
import NIOCore
import NIOPosix
import ParleyTLS

// MARK: options

struct Common: ParsableArguments {
    @Option(help: "Server address.") var host = "127.0.0.1"
    @Option(help: "Server port.") var port = 3331
    @Option(help: ArgumentHelp("CA certificate that signed the server's (PEM).", valueName: "PATH")) var ca = "certs/ca.pem"
    @Option(name: .customLong("server-name"), help: "Name checked against the server certificate.") var serverName = "localhost"
    @Option(name: .customLong("server-pid"), help: "Server process id: its CPU seconds and RSS are reported.") var serverPid: Int32?
    @Option(name: .customLong("user-prefix"), help: "User names are <prefix><i>.") var userPrefix = "bench-"
    @Option(name: .customLong("password-prefix"), help: "Passwords are <prefix><i> (8+ bytes in all).") var passwordPrefix = "password-"
    @Option(name: .customLong("connect-concurrency"), help: "Connects/logins in progress at once.") var connectConcurrency = 64
    @Option(name: .customLong("login-timeout"), help: "Hard limit (s) on connecting and logging in everybody.") var loginTimeout: Double = 120
    @Option(help: "Seconds to wait after logins before measuring (lets presence fan-out settle).") var settle: Double = 1
    @Option(help: "Hard limit (s) on waiting for outstanding deliveries after sending stops.") var drain: Double = 5
    @Flag(help: "Print one JSON object instead of text lines.") var json = false

    func name(_ i: Int) -> String { "\(userPrefix)\(i)" }
    func password(_ i: Int) -> String { "\(passwordPrefix)\(i)" }
}

struct Traffic: ParsableArguments {
    @Option(name: .shortAndLong, help: "Total messages per second over all senders; 0 = open loop (see --max-inflight).") var rate: Double = 200
    @Option(name: [.customShort("d"), .long], help: "Measured seconds.") var duration: Double = 10
    @Option(help: "Seconds of unmeasured sending before the measurement.") var warmup: Double = 2
    @Option(name: .customLong("max-inflight"), help: "Open loop (-r 0): messages in flight at most.") var maxInflight = 100
    @Option(help: "Bytes of padding added to each message text.") var padding = 0
}

// MARK: shared run machinery

nonisolated(unsafe) var childToKill: pid_t = 0

/// Exits the process after `seconds` no matter what (every scenario stops by itself).
func armWatchdog(_ seconds: Double) {
    DispatchQueue.global().asyncAfter(deadline: .now() + seconds) {
        let msg = "parley-bench: hard time limit (\(Int(seconds)) s) reached, exiting\n"
        _ = msg.withCString { write(2, $0, strlen($0)) }
        if childToKill > 0 { kill(childToKill, SIGKILL) }
        _exit(3)
    }
}

final class Run {
    let common: Common
    let report = Report()
    let engine: Engine
    let benchCPU0 = ProcSample.selfCPU()

    init(_ scenario: String, _ common: Common, hardLimit: Double) throws {
        self.common = common
        signal(SIGPIPE, SIG_IGN)
        armWatchdog(hardLimit)
        report.add("scenario", scenario)
        report.add("command", commandLineText())
        if !common.json { print("command: \(commandLineText())"); fflush(nil) }
        engine = try Engine(host: common.host, port: common.port, serverName: common.serverName, caPath: common.ca)
    }

    func server() -> ProcSample? { common.serverPid.flatMap { ProcSample.read(pid: $0) } }

    func clients(_ range: Range<Int>, prefix: String? = nil) -> [BenchClient] {
        range.map { i in
            BenchClient(
                index: i, name: prefix.map { p in p + String(i) } ?? common.name(i), password: common.password(i),
                mode: .login)
        }
    }

    func ensureFiles(_ n: Int) {
        let have = raiseFileLimit(wanted: n + 256)
        report.add("nofile_limit", have)
        if have < n + 32 { report.add("warning", "RLIMIT_NOFILE is \(have), too low for \(n) connections (raise the hard limit: ulimit -Hn)") }
        if let pid = common.serverPid, let srv = processFileLimit(pid: pid), srv < n + 32 {
            report.add("warning_server", "the server's open-file limit is \(srv), below \(n) connections")
        }
    }

    /// Logs `list` in; adds login figures under `key`; returns false (after reporting) on failure.
    func loginAll(_ list: [BenchClient], key: String, concurrency: Int? = nil) -> Bool {
        let t0 = nowNs()
        let e = engine
        let conc = concurrency ?? common.connectConcurrency
        let timeout = TimeAmount.nanoseconds(Int64(common.loginTimeout * 1e9))
        let result = Result { try e.onLoop { e.connectAll(list, concurrency: conc, timeout: timeout) }.wait() }
        let wall = Double(nowNs() - t0) / 1e9
        var h = makeHistogram()
        var created = 0
        var retries = 0
        let snapshot = e.onLoop { list.map { ($0.loginLatencyNs, $0.created, $0.loginRetries) } }
        for (ns, c, r) in snapshot {
            if ns > 0 { _ = h.record(ns) }
            if c { created += 1 }
            retries += r
        }
        report.add(key, .object([
            ("clients", .int(Int64(list.count))),
            ("ok", .int(Int64(h.totalCount))),
            ("wall_s", .double(wall, decimals: 3)),
            ("per_s", .double(Double(h.totalCount) / max(wall, 1e-9), decimals: 0)),
            ("registered", .int(Int64(created))),
            ("rate_limited_retries", .int(Int64(retries))),
            ("latency_ms", msFigure(h)),
        ]))
        switch result {
        case .success(let failed) where failed == 0: return true
        case .success(let failed):
            report.add("error", "\(failed) of \(list.count) logins failed; first: \(e.onLoop { e.firstProblem } ?? "?")")
        case .failure(let err):
            report.add("error", "\(err); first problem: \(e.onLoop { e.firstProblem } ?? "none")")
        }
        return false
    }

    func addServer(_ key: String, _ s: ProcSample?) {
        guard let s else {
            report.add(key, .null)
            return
        }
        report.add(key, .object([("cpu_s", .double(s.cpuSeconds, decimals: 2)), ("rss_kib", .int(Int64(s.rssKiB)))]))
    }

    func finish(ok: Bool) -> Never {
        report.add("bench_cpu_s_total", ProcSample.selfCPU() - benchCPU0, 2)
        report.print(json: common.json)
        engine.shutdown()
        if childToKill > 0 { kill(childToKill, SIGTERM) }
        exit(ok ? 0 : 1)
    }
}

func msFigure(_ h: Histogram<UInt64>) -> Figure {
    guard h.totalCount > 0 else { return .null }
    func ms(_ ns: UInt64) -> Figure { .double(Double(ns) / 1e6, decimals: 1) }
    return .object([
        ("p50", ms(h.valueAtPercentile(50))), ("p90", ms(h.valueAtPercentile(90))),
        ("p99", ms(h.valueAtPercentile(99))), ("max", ms(h.max)),
    ])
}

func sleepUntil(_ ns: UInt64) {
    let now = nowNs()
    if ns > now { sleepSeconds(Double(ns - now) / 1e9) }
}

/// Polls `cond` on the loop every 10 ms until it holds or `timeout` passes.
func waitUntil(_ e: Engine, timeout: Double, _ cond: @escaping @Sendable () -> Bool) -> Bool {
    let end = nowNs() + UInt64(timeout * 1e9)
    while nowNs() < end {
        if e.onLoop(cond) { return true }
        sleepSeconds(0.01)
    }
    return e.onLoop(cond)
}

// MARK: traffic (fanout, direct, login-burst)

struct BurstSpec {
    var clients: Int
    var concurrency: Int
    var before: Double
    var after: Double
}

enum TrafficKind { case fanout, direct }

func runTraffic(
    _ run: Run, kind: TrafficKind, n: Int, senders s: Int, traffic t: Traffic, burst: BurstSpec? = nil
) -> Never {
    let e = run.engine
    let rep = run.report
    rep.add("clients", n)
    rep.add("senders", kind == .fanout ? s : n)
    rep.add("rate_msg_s", t.rate, 0)
    if t.rate <= 0 { rep.add("max_inflight", t.maxInflight) }
    rep.add("warmup_s", t.warmup, 1)
    rep.add("duration_s", burst.map { $0.before + $0.after } ?? t.duration, 1)
    run.ensureFiles(n + (burst?.clients ?? 0))

    let list = run.clients(0..<n)
    e.onLoop {
        e.padding = t.padding
        e.maxInflight = UInt64(max(1, t.maxInflight))
        switch kind {
        case .fanout:
            e.expectedPerMessage = UInt64(n - 1)
            for c in list { c.expected = [UInt32](repeating: 0, count: s) }
            for i in 0..<s { list[i].makeSender(slot: i, to: nil) }
            e.senders = Array(list[0..<s])
        case .direct:
            e.expectedPerMessage = 1
            for c in list { c.expected = [0] }
            for i in 0..<n { list[i].makeSender(slot: 0, to: list[i ^ 1].name) }
            e.senders = list
        }
    }
    let s0 = run.server()
    run.addServer("server_before_login", s0)
    guard run.loginAll(list, key: "login") else { run.finish(ok: false) }
    sleepSeconds(run.common.settle)

    let startNs = nowNs() + 5_000_000
    let measureStart = startNs + UInt64(t.warmup * 1e9)
    let measuredSeconds = burst.map { $0.before + $0.after } ?? t.duration
    let plannedEnd = measureStart + UInt64(measuredSeconds * 1e9)
    e.onLoop {
        e.mark(measureStart)
        if burst == nil { e.mark(plannedEnd, final: true) }
        // With a burst the end is set when the burst and the "after" period are over.
        e.startSending(rate: t.rate, startNs: startNs, stopNs: burst == nil ? plannedEnd : .max)
    }
    sleepUntil(measureStart)
    let s1 = run.server()
    let b1 = ProcSample.selfCPU()
    let sent1 = e.onLoop { e.sentTotal }
    var burstFigures: (wall: Double, ok: Bool)? = nil
    var measureEnd = plannedEnd
    if let burst {
        sleepUntil(measureStart + UInt64(burst.before * 1e9))
        let runID = String(UInt64(time(nil)) % 1_000_000, radix: 36) + String(getpid() % 1000, radix: 36)
        let blist = run.clients(0..<burst.clients, prefix: "\(run.common.userPrefix)burst\(runID)-")
        let bStart = nowNs()
        e.onLoop { e.mark(bStart) }
        let ok = run.loginAll(blist, key: "burst_login", concurrency: burst.concurrency)
        let bEnd = nowNs()
        e.onLoop { e.mark(bEnd) }
        burstFigures = (Double(bEnd - bStart) / 1e9, ok)
        sleepSeconds(burst.after)
        let end = nowNs()
        measureEnd = end
        e.onLoop {
            e.mark(end, final: true)
            e.stopSending()
        }
    } else {
        sleepUntil(plannedEnd)
    }
    let s2 = run.server()
    let b2 = ProcSample.selfCPU()
    let sent2 = e.onLoop { e.sentTotal }
    // Drain: every sent message delivered to all its recipients, or the drain limit.
    let drained = waitUntil(e, timeout: run.common.drain) { !e.sending && e.totalUnique >= e.sentTotal * e.expectedPerMessage }
    let window = Double(measureEnd - measureStart) / 1e9

    struct Totals: Sendable {
        var sent: UInt64, unique: UInt64, dups: UInt64, gaps: UInt64, expected: UInt64
        var counts: [UInt64], sendErrors: Int, closes: Int, loggedOut: Int, serverErrors: Int, problem: String?
    }
    let tot = e.onLoop {
        Totals(
            sent: e.sentTotal, unique: e.totalUnique, dups: e.dups, gaps: e.gaps,
            expected: e.sentTotal * e.expectedPerMessage, counts: e.windowCounts, sendErrors: e.sendErrors,
            closes: e.unexpectedCloses, loggedOut: e.loggedOut, serverErrors: e.serverErrors, problem: e.firstProblem)
    }
    let hists = e.onLoop { UnsafeSendable(e.hists) }.value
    let measuredDeliveries = tot.counts.reduce(0, +)
    let lost = tot.expected > tot.unique ? tot.expected - tot.unique : 0

    rep.add("sent_total", tot.sent)
    rep.add("sent_measured", sent2 - sent1)
    rep.add("send_rate_measured", Double(sent2 - sent1) / window, 1)
    rep.add("deliveries_expected", tot.expected)
    rep.add("deliveries_measured", measuredDeliveries)
    rep.add("deliveries_per_s", Double(measuredDeliveries) / window, 0)
    if burst == nil {
        rep.add("latency", latencyFigure(hists[0]))
    } else {
        rep.add("latency_before_burst", latencyFigure(hists[0]))
        if hists.count > 1 { rep.add("latency_during_burst", latencyFigure(hists[1])) }
        if hists.count > 2 { rep.add("latency_after_burst", latencyFigure(hists[2])) }
        if let bf = burstFigures { rep.add("burst_wall_s", bf.wall, 3) }
    }
    rep.add("lost", lost)
    rep.add("dup", tot.dups)
    rep.add("gaps", tot.gaps)
    rep.add("drained", drained)
    rep.add("send_errors", tot.sendErrors)
    rep.add("unexpected_closes", tot.closes)
    rep.add("loggedout_events", tot.loggedOut)
    if let p = tot.problem { rep.add("first_problem", p) }
    run.addServer("server_after_login", s1)
    run.addServer("server_after_measure", s2)
    if let s1, let s2 {
        let cpu = s2.cpuSeconds - s1.cpuSeconds
        rep.add("server_cpu_s_measured", cpu, 2)
        rep.add("server_cpu_pct", 100 * cpu / window, 0)
        rep.add("server_cpu_us_per_delivery", measuredDeliveries > 0 ? cpu * 1e6 / Double(measuredDeliveries) : .nan, 2)
    }
    if let s0, let s1 {
        rep.add("server_login_cpu_s", s1.cpuSeconds - s0.cpuSeconds, 2)
    }
    rep.add("bench_cpu_s_measured", b2 - b1, 2)
    rep.add("bench_cpu_pct", 100 * (b2 - b1) / window, 0)
    _ = try? e.onLoop { e.closeAll(list) }.wait()
    let ok = lost == 0 && tot.dups == 0 && (burstFigures?.ok ?? true)
    run.finish(ok: ok)
}

struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

// MARK: commands


struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parley-bench",
        abstract: "Load generator and measurements for parley-server (see docs/BENCH-TOOL.md).",
        subcommands: [Fanout.self, Direct.self, Idle.self, Handshake.self, LoginBurst.self, Offline.self, Private.self])
}

struct Fanout: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "N clients, S of them broadcasting at R msg/s in total.")
    @OptionGroup var common: Common
    @OptionGroup var traffic: Traffic
    @Option(name: .shortAndLong, help: "Logged-in clients.") var n = 1000
    @Option(name: .shortAndLong, help: "Senders (the first S clients).") var senders = 10

    func validate() throws {
        guard n >= 2, (1...n).contains(senders) else { throw ValidationError("need n >= 2 and 1 <= senders <= n") }
    }

    func run() throws {
        let r = try Run("fanout", common, hardLimit: common.loginTimeout + common.settle + traffic.warmup + traffic.duration + common.drain + 60)
        runTraffic(r, kind: .fanout, n: n, senders: senders, traffic: traffic)
    }
}

struct Direct: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "N clients in pairs, each messaging its partner; R msg/s in total.")
    @OptionGroup var common: Common
    @OptionGroup var traffic: Traffic
    @Option(name: .shortAndLong, help: "Logged-in clients (even: client 2k talks to 2k+1).") var n = 1000

    func validate() throws {
        guard n >= 2, n % 2 == 0 else { throw ValidationError("n must be even and >= 2") }
    }

    func run() throws {
        let r = try Run("direct", common, hardLimit: common.loginTimeout + common.settle + traffic.warmup + traffic.duration + common.drain + 60)
        runTraffic(r, kind: .direct, n: n, senders: n, traffic: traffic)
    }
}

struct LoginBurst: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "login-burst",
        abstract: "A small fan-out runs while B new users register at once; latency before/during/after the burst.")
    @OptionGroup var common: Common
    @Option(name: .shortAndLong, help: "Logged-in clients of the background fan-out.") var n = 200
    @Option(name: .shortAndLong, help: "Senders of the background fan-out.") var senders = 5
    @Option(name: .shortAndLong, help: "Background messages per second in total.") var rate: Double = 100
    @Option(help: "Seconds of unmeasured sending first.") var warmup: Double = 2
    @Option(name: [.customShort("b"), .long], help: "New users that log in (and register) at once.") var burst = 100
    @Option(name: .customLong("burst-concurrency"), help: "Burst logins in progress at once (default: all).") var burstConcurrency: Int?
    @Option(help: "Measured seconds before the burst.") var before: Double = 3
    @Option(help: "Measured seconds after the burst's logins completed.") var after: Double = 2
    @Option(help: "Bytes of padding added to each message text.") var padding = 0

    func run() throws {
        var t = try Traffic.parse([])
        t.rate = rate
        t.warmup = warmup
        t.padding = padding
        let r = try Run("login-burst", common, hardLimit: 2 * common.loginTimeout + common.settle + warmup + before + after + common.drain + 60)
        runTraffic(
            r, kind: .fanout, n: n, senders: senders, traffic: t,
            burst: BurstSpec(clients: burst, concurrency: burstConcurrency ?? burst, before: before, after: after))
    }
}

struct Idle: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "N connections logged in and idle: server RSS per connection, login times.")
    @OptionGroup var common: Common
    @Option(name: .shortAndLong, help: "Connections.") var n = 10000

    func run() throws {
        let r = try Run("idle", common, hardLimit: common.loginTimeout + common.settle + 60)
        let e = r.engine
        r.report.add("clients", n)
        r.ensureFiles(n)
        let list = r.clients(0..<n)
        let s0 = r.server()
        let ok = r.loginAll(list, key: "login")
        let s1 = r.server()
        sleepSeconds(common.settle)
        let s2 = r.server()
        r.addServer("server_before", s0)
        r.addServer("server_after_login", s1)
        r.addServer("server_after_settle", s2)
        if let s0, let s2 {
            r.report.add("server_rss_kib_per_connection", Double(s2.rssKiB - s0.rssKiB) / Double(n), 2)
            r.report.add("server_cpu_s_logins", s2.cpuSeconds - s0.cpuSeconds, 2)
        }
        let closes = e.onLoop { e.unexpectedCloses + e.loggedOut }
        r.report.add("dropped_while_idle", closes)
        _ = try? e.onLoop { e.closeAll(list) }.wait()
        r.finish(ok: ok && closes == 0)
    }
}

struct Handshake: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "TLS handshakes/s (connect, handshake, close; no login) against the server and openssl s_server.")
    @OptionGroup var common: Common
    @Option(name: [.customShort("d"), .long], help: "Seconds per target.") var duration: Double = 5
    @Option(name: [.customShort("c"), .long], help: "Concurrent connect/handshake slots.") var concurrency = 16
    @Option(help: "Server certificate for s_server (PEM; the parley server's).") var cert = "certs/server.pem"
    @Option(help: "Server key for s_server.") var key = "certs/server.key"
    @Option(name: .customLong("openssl-port"), help: "Port for openssl s_server (0: skip it).") var opensslPort = 7444
    @Option(help: "openssl binary.") var openssl = "/usr/bin/openssl"

    func run() throws {
        let r = try Run("handshake", common, hardLimit: 2 * duration + 60)
        let e = r.engine
        r.report.add("duration_s", duration, 1)
        r.report.add("concurrency", concurrency)
        r.ensureFiles(concurrency * 4)

        func measure(port: Int, pid: Int32?, key: String) -> Double? {
            let start = nowNs() + 200_000_000  // 0.2 s ramp-up, not counted
            let end = start + UInt64(duration * 1e9)
            let s0 = pid.flatMap { ProcSample.read(pid: $0) }
            e.onLoop { e.handshakeLoop(slots: concurrency, port: port, startNs: start, endNs: end + 10_000_000_000) }
            sleepUntil(start)
            let c0 = pid.flatMap { ProcSample.read(pid: $0) }
            let b0 = ProcSample.selfCPU()
            sleepUntil(end)
            let c1 = pid.flatMap { ProcSample.read(pid: $0) }
            let benchCPU = ProcSample.selfCPU() - b0
            let (count, failures, hist) = e.onLoop {
                e.hsRunning = false
                return (e.handshakesCounted, e.handshakeFailures, UnsafeSendable(e.hsHist))
            }
            _ = waitUntil(e, timeout: 3) { false }  // let the slots finish their last cycle
            let rate = Double(count) / duration
            var fields: [(String, Figure)] = [
                ("handshakes", .int(Int64(count))), ("per_s", .double(rate, decimals: 0)),
                ("failures", .int(Int64(failures))), ("latency", latencyFigure(hist.value)),
            ]
            if let c0, let c1 {
                let cpu = c1.cpuSeconds - c0.cpuSeconds
                fields.append(("server_cpu_s", .double(cpu, decimals: 2)))
                fields.append(("server_cpu_us_per_handshake", .double(count > 0 ? cpu * 1e6 / Double(count) : .nan, decimals: 0)))
            }
            fields.append(("bench_cpu_s", .double(benchCPU, decimals: 2)))
            if let s0 { fields.append(("server_rss_kib_before", .int(Int64(s0.rssKiB)))) }
            if let c1 { fields.append(("server_rss_kib_after", .int(Int64(c1.rssKiB)))) }
            r.report.add(key, .object(fields))
            return rate
        }

        let parleyRate = measure(port: common.port, pid: common.serverPid, key: "parley")
        var opensslRate: Double? = nil
        if opensslPort > 0 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: openssl)
            p.arguments = [
                "s_server", "-accept", "\(common.host):\(opensslPort)", "-cert", cert, "-key", key, "-tls1_3",
                "-ciphersuites", "TLS_AES_128_GCM_SHA256", "-groups", "X25519:P-256", "-num_tickets", "0", "-www", "-quiet",
            ]
            p.standardInput = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            childToKill = p.processIdentifier
            r.report.add("openssl_command", ([openssl] + p.arguments!).joined(separator: " "))
            // Wait until it accepts.
            var ready = false
            for _ in 0..<100 where !ready {
                sleepSeconds(0.05)
                ready = tcpConnects(host: common.host, port: opensslPort)
            }
            if ready {
                opensslRate = measure(port: opensslPort, pid: p.processIdentifier, key: "openssl_s_server")
            } else {
                r.report.add("openssl_s_server", "did not start listening on \(opensslPort)")
            }
            p.terminate()
            p.waitUntilExit()
            childToKill = 0
        }
        if let parleyRate, let opensslRate, opensslRate > 0 {
            r.report.add("ratio_parley_to_openssl", parleyRate / opensslRate, 2)
        }
        r.finish(ok: true)
    }
}

func tcpConnects(host: String, port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &addr.sin_addr)
    return withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
}

struct Offline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "M messages stored for an offline user, then that user logs in: time to receive (and ack) them all.")
    @OptionGroup var common: Common
    @Option(name: .shortAndLong, help: "Stored messages.") var messages = 1000
    @Option(help: "Requests in flight while storing.") var window = 64

    func run() throws {
        let r = try Run("offline", common, hardLimit: 3 * common.loginTimeout + 60)
        let e = r.engine
        let rep = r.report
        rep.add("messages", messages)
        let runID = String(UInt64(time(nil)) % 1_000_000, radix: 36) + String(getpid() % 1000, radix: 36)
        let recipientName = "\(common.userPrefix)off\(runID)"
        func recipient() -> BenchClient {
            let c = BenchClient(index: 1, name: recipientName, password: common.password(1), mode: .login)
            c.ackStored = true
            return c
        }
        // 1. The recipient registers, then leaves.
        let first = recipient()
        guard r.loginAll([first], key: "recipient_register") else { r.finish(ok: false) }
        e.onLoop { first.write("{\"type\":\"logout\"}\n") }
        guard waitUntil(e, timeout: 5, { first.channel?.isActive == false }) else {
            rep.add("error", "recipient did not get logged out")
            r.finish(ok: false)
        }
        // 2. The sender stores M messages (each gets a reply once stored).
        let sender = r.clients(0..<1)[0]
        guard r.loginAll([sender], key: "sender_login") else { r.finish(ok: false) }
        let t0 = nowNs()
        let win = max(1, window)
        let count = messages
        e.onLoop { sender.makeSender(slot: 0, to: recipientName) }
        let stored = waitUntil(e, timeout: common.loginTimeout) {
            // Keep `win` requests outstanding.
            while Int(sender.seq) < count && Int(sender.seq) - (sender.repliesOK + sender.repliesError) < win {
                sender.send(ts: nowNs(), padding: 0)
            }
            return sender.repliesOK + sender.repliesError >= count
        }
        let storeWall = Double(nowNs() - t0) / 1e9
        let errors = e.onLoop { sender.repliesError }
        rep.add("store_wall_s", storeWall, 3)
        rep.add("store_per_s", Double(messages) / storeWall, 0)
        rep.add("store_errors", errors)
        guard stored, errors == 0 else {
            rep.add("error", "storing failed: \(e.onLoop { e.firstProblem } ?? "timeout")")
            r.finish(ok: false)
        }
        _ = try? e.onLoop { e.closeAll([sender]) }.wait()
        // 3. The recipient logs in; time to the last stored message (each acked on arrival).
        let rc = recipient()
        let loginStart = nowNs()
        guard r.loginAll([rc], key: "recipient_login") else { r.finish(ok: false) }
        let all = waitUntil(e, timeout: common.loginTimeout) { rc.storedReceived >= count }
        sleepSeconds(0.2)  // anything extra (duplicates) shows up here
        let (received, dup, ooo, lastNs, okNs, nextSeq) = e.onLoop {
            (rc.storedReceived, rc.storedDup, rc.storedOutOfOrder, rc.storedLastNs, rc.loginOkNs, rc.storedNextSeq)
        }
        rep.add("received", received)
        rep.add("complete", all)
        rep.add("in_order", ooo == 0)
        rep.add("dup", dup)
        rep.add("out_of_order", ooo)
        rep.add("missing", messages - Int(min(UInt64(messages), nextSeq)) + ooo)
        if lastNs > 0 {
            rep.add("login_to_last_ms", Double(lastNs - loginStart) / 1e6, 1)
            rep.add("login_reply_to_last_ms", Double(lastNs - okNs) / 1e6, 1)
            rep.add("stored_per_s", Double(received) / (Double(lastNs - okNs) / 1e9), 0)
        }
        // 4. Logout (the server waits for the acks), then log in again: nothing may be left.
        e.onLoop { rc.write("{\"type\":\"logout\"}\n") }
        _ = waitUntil(e, timeout: 5) { rc.channel?.isActive == false }
        let again = recipient()
        if r.loginAll([again], key: "recipient_relogin") {
            sleepSeconds(0.5)
            let left = e.onLoop { again.storedReceived }
            rep.add("left_after_acks", left)
            _ = try? e.onLoop { e.closeAll([again]) }.wait()
            r.finish(ok: all && dup == 0 && ooo == 0 && left == 0)
        }
        r.finish(ok: false)
    }
}
