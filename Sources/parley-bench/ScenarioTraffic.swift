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
    let d1 = run.database()
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
    let d2 = run.database()
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
    if let d1, let d2 {
        let cpu = d2 - d1
        rep.add("database_cpu_s_measured", cpu, 2)
        rep.add("database_cpu_us_per_delivery", measuredDeliveries > 0 ? cpu * 1e6 / Double(measuredDeliveries) : .nan, 2)
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
