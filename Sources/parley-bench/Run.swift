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
        engine = try Engine(
            host: common.host, port: common.port, alsoPorts: common.alsoPorts, serverName: common.serverName, caPath: common.ca)
    }

    /// The server's CPU and RSS, summed over every node given (nil without --server-pid).
    func server() -> ProcSample? {
        guard let first = common.serverPid else { return nil }
        var total = ProcSample(cpuSeconds: 0, rssKiB: 0)
        for pid in [first] + common.alsoServerPids {
            guard let s = ProcSample.read(pid: pid) else { return nil }
            total.cpuSeconds += s.cpuSeconds
            total.rssKiB += s.rssKiB
        }
        return total
    }

    /// CPU seconds of every process of --database-user (nil without it).
    func database() -> Double? { common.databaseUser.flatMap(ProcSample.cpuOfUser) }

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

struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
