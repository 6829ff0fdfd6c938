#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Histogram

// MARK: clocks and process figures

/// Monotonic nanoseconds (CLOCK_MONOTONIC), the clock embedded in every timed message.
@inline(__always)
func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Sleeps the calling (non event loop) thread.
func sleepSeconds(_ s: Double) {
    guard s > 0 else { return }
    var ts = timespec(tv_sec: Int(s), tv_nsec: Int((s - Double(Int(s))) * 1e9))
    var rem = timespec()
    while nanosleep(&ts, &rem) != 0 && errno == EINTR { ts = rem }
}

/// CPU seconds (utime+stime of all threads) and RSS of a process, from /proc.
struct ProcSample {
    var cpuSeconds: Double
    var rssKiB: Int

    static func read(pid: Int32) -> ProcSample? {
        guard let stat = readSmallFile("/proc/\(pid)/stat"),
            let close = stat.lastIndex(of: UInt8(ascii: ")"))
        else { return nil }
        // Fields after "comm)": state(3) ppid(4) ... utime(14) stime(15).
        let rest = stat[(close + 2)...].split(separator: UInt8(ascii: " "))
        guard rest.count > 13, let ut = parseInt(rest[11]), let st = parseInt(rest[12]) else { return nil }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        var rss = 0
        if let status = readSmallFile("/proc/\(pid)/status") {
            for line in status.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("VmRSS:".utf8)) {
                let digits = line.filter { $0 >= 48 && $0 <= 57 }
                rss = parseInt(digits[...]) ?? 0
            }
        }
        return ProcSample(cpuSeconds: Double(ut + st) / hz, rssKiB: rss)
    }

    /// CPU seconds (user+system, reaped children included) of every process `user` runs.
    static func cpuOfUser(_ user: String) -> Double? {
        guard let pw = getpwnam(user), let dir = opendir("/proc") else { return nil }
        defer { closedir(dir) }
        let uid = pw.pointee.pw_uid
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        var ticks = 0
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = Int32(name) else { continue }
            var st = stat()
            guard stat("/proc/\(pid)", &st) == 0, st.st_uid == uid,
                let text = readSmallFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: UInt8(ascii: ")"))
            else { continue }
            // utime(14) stime(15) cutime(16) cstime(17), counted from the state field (3).
            let rest = text[(close + 2)...].split(separator: UInt8(ascii: " "))
            guard rest.count > 14 else { continue }
            for field in rest[11...14] { ticks += parseInt(field) ?? 0 }
        }
        return Double(ticks) / hz
    }

    /// This process's own CPU seconds (user+system).
    static func selfCPU() -> Double {
        var ru = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
        return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec)
            + Double(ru.ru_stime.tv_usec) / 1e6
    }
}

func readSmallFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}

func parseInt<C: Collection>(_ bytes: C) -> Int? where C.Element == UInt8 {
    var v = 0
    var any = false
    for b in bytes {
        guard b >= 48 && b <= 57 else { return nil }
        v = v * 10 + Int(b - 48)
        any = true
    }
    return any ? v : nil
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the resulting soft limit.
func raiseFileLimit(wanted: Int) -> Int {
    var rl = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    if rl.rlim_cur < rlim_t(wanted) {
        rl.rlim_cur = min(rl.rlim_max, rlim_t(wanted))
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &rl)
    }
    return Int(rl.rlim_cur)
}

/// Soft RLIMIT_NOFILE of another process (from /proc/PID/limits), if readable.
func processFileLimit(pid: Int32) -> Int? {
    guard let text = readSmallFile("/proc/\(pid)/limits") else { return nil }
    for line in text.split(separator: UInt8(ascii: "\n")) where line.starts(with: Array("Max open files".utf8)) {
        let fields = line.split(separator: UInt8(ascii: " "))
        if fields.count >= 5 { return parseInt(fields[3]) }
    }
    return nil
}

// MARK: byte scanning (no Foundation, no allocation)

/// Index of `needle` in `hay` from `from`, or -1.
@inline(__always)
func find(_ needle: StaticString, in hay: UnsafeRawBufferPointer, from: Int = 0) -> Int {
    let n = needle.utf8CodeUnitCount
    guard n > 0, hay.count - from >= n, let base = hay.baseAddress else { return -1 }
    let first = Int32(needle.utf8Start.pointee)
    var i = from
    let last = hay.count - n
    while i <= last {
        guard let p = memchr(base + i, first, last - i + 1) else { return -1 }
        let at = base.distance(to: UnsafeRawPointer(p))
        if memcmp(base + at, needle.utf8Start, n) == 0 { return at }
        i = at + 1
    }
    return -1
}

/// Parses an unsigned decimal at `i`, advancing `i` past it.
@inline(__always)
func scanUInt(_ hay: UnsafeRawBufferPointer, _ i: inout Int) -> UInt64? {
    var v: UInt64 = 0
    let start = i
    while i < hay.count {
        let b = hay[i]
        guard b >= 48 && b <= 57 else { break }
        v = v &* 10 &+ UInt64(b - 48)
        i += 1
    }
    return i > start ? v : nil
}

// MARK: figures

/// A JSON-ish value for reports (printed by hand: ordered keys, no Foundation).
indirect enum Figure {
    case int(Int64)
    case double(Double, decimals: Int)
    case string(String)
    case bool(Bool)
    case null
    case object([(String, Figure)])

    var json: String {
        switch self {
        case .int(let v): return String(v)
        case .double(let v, let d): return v.isFinite ? formatDouble(v, d) : "null"
        case .string(let s): return jsonQuote(s)
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        case .object(let fields):
            return "{" + fields.map { jsonQuote($0.0) + ":" + $0.1.json }.joined(separator: ",") + "}"
        }
    }

    var text: String {
        switch self {
        case .string(let s): return s
        case .null: return "n/a"
        case .object(let fields): return fields.map { "\($0.0)=\($0.1.text)" }.joined(separator: " ")
        default: return json
        }
    }
}

func formatDouble(_ v: Double, _ decimals: Int) -> String {
    var scale: Double = 1
    for _ in 0..<decimals { scale *= 10 }
    let r = (abs(v) * scale).rounded()
    let whole = UInt64(r / scale)
    var out = (v < 0 && r > 0 ? "-" : "") + String(whole)
    if decimals > 0 {
        let frac = String(UInt64(r - Double(whole) * scale))
        out += "." + String(repeating: "0", count: decimals - frac.count) + frac
    }
    return out
}

func jsonQuote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 { out += "\\u00" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16) } else { out.unicodeScalars.append(u) }
        }
    }
    return out + "\""
}

/// Ordered figures of one run, printed as text lines or one JSON object.
final class Report: @unchecked Sendable {
    private(set) var fields: [(String, Figure)] = []
    func add(_ key: String, _ value: Figure) { fields.append((key, value)) }
    func add(_ key: String, _ value: Int) { add(key, .int(Int64(value))) }
    func add(_ key: String, _ value: UInt64) { add(key, .int(Int64(value))) }
    func add(_ key: String, _ value: Double, _ decimals: Int = 1) { add(key, .double(value, decimals: decimals)) }
    func add(_ key: String, _ value: String) { add(key, .string(value)) }
    func add(_ key: String, _ value: Bool) { add(key, .bool(value)) }

    func print(json: Bool) {
        if json {
            Swift.print(Figure.object(fields).json)
        } else {
            // The command line was printed first already (so a crash still shows what ran).
            for (k, v) in fields where k != "command" { Swift.print("\(k): \(v.text)") }
        }
        fflush(nil)
    }
}

/// Latency summary in microseconds of a nanosecond histogram.
func latencyFigure(_ h: Histogram<UInt64>) -> Figure {
    guard h.totalCount > 0 else { return .object([("count", .int(0))]) }
    func us(_ ns: UInt64) -> Figure { .double(Double(ns) / 1000, decimals: 0) }
    return .object([
        ("count", .int(Int64(h.totalCount))),
        ("p50_us", us(h.valueAtPercentile(50))),
        ("p90_us", us(h.valueAtPercentile(90))),
        ("p99_us", us(h.valueAtPercentile(99))),
        ("p999_us", us(h.valueAtPercentile(99.9))),
        ("max_us", us(h.max)),
    ])
}

func makeHistogram() -> Histogram<UInt64> {
    // 1 µs .. 120 s in ns, 3 significant digits.
    Histogram<UInt64>(lowestDiscernibleValue: 1000, highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
}

/// The command line as typed, shell-quoted where needed.
func commandLineText() -> String {
    CommandLine.arguments.map { arg -> String in
        let safe = arg.utf8.allSatisfy { b in
            (b >= 48 && b <= 57) || (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || "-_./:=,@+%".utf8.contains(b)
        }
        return safe && !arg.isEmpty ? arg : "'" + arg.replacingOccurrences("'", "'\\''") + "'"
    }.joined(separator: " ")
}

extension String {
    func replacingOccurrences(_ a: String, _ b: String) -> String {
        self.split(separator: a, omittingEmptySubsequences: false).joined(separator: b)
    }
}
