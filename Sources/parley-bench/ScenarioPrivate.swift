// parley-bench private: two users open a real private session through the server with the
// ParleyClient library (ChatConnection, PrivateListener, PrivateLink), then measure latency and
// throughput over the direct, mutually pinned TLS 1.3 link. The server carries none of that
// traffic: its CPU over the measured windows is the evidence.

import ArgumentParser
import Dispatch
import Histogram
import NIOConcurrencyHelpers
import NIOCore
import ParleyClient
import ParleyProtocol
import ParleyTLS

struct Private: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Two users open a private session through the server; latency and throughput over the direct link.")
    @OptionGroup var common: Common
    @Option(name: .shortAndLong, help: "Timed messages per second over the link (latency phase).") var rate: Double = 1000
    @Option(name: [.customShort("d"), .long], help: "Measured seconds of the latency phase.") var duration: Double = 5
    @Option(help: "Seconds of unmeasured sending at the rate first.") var warmup: Double = 0.5
    @Option(name: .customLong("throughput-duration"), help: "Seconds of the open-loop throughput phase (0: skip it).")
    var throughputDuration: Double = 2
    @Option(help: "Throughput phase: messages in flight at most (a link closes when 1024 are unread).") var window = 256
    @Option(help: "Bytes of padding added to each latency-phase message text.") var padding = 0
    @Option(name: .customLong("throughput-padding"), help: "Bytes of padding added to each throughput-phase message text.")
    var throughputPadding = 1000
    @Flag(help: "Send `active` to the server after each private message, as the parley client does.") var active = false

    func validate() throws {
        guard rate > 0, duration > 0, warmup >= 0, throughputDuration >= 0 else {
            throw ValidationError("need -r > 0, -d > 0, --warmup >= 0, --throughput-duration >= 0")
        }
        guard (1...1000).contains(window) else { throw ValidationError("--window must be 1...1000") }
        guard (0...4000).contains(padding), (0...4000).contains(throughputPadding) else {
            throw ValidationError("padding must be 0...4000 (texts are at most 4096 bytes)")
        }
    }

    func run() throws {
        let r = try Run(
            "private", common,
            hardLimit: common.loginTimeout + 40 + warmup + duration + throughputDuration + 2 * common.drain + 60)
        let options = PrivateOptions(
            rate: rate, duration: duration, warmup: warmup, throughputDuration: throughputDuration, window: window,
            padding: padding, throughputPadding: throughputPadding, active: active)
        let run = UnsafeSendable(r)  // the main thread only waits while the task runs
        let ok = blockingAwait { await PrivateBench(run: run.value, options: options).run() }
        r.finish(ok: ok)
    }
}

struct PrivateOptions: Sendable {
    var rate: Double
    var duration: Double
    var warmup: Double
    var throughputDuration: Double
    var window: Int
    var padding: Int
    var throughputPadding: Int
    var active: Bool
}

/// Runs `body` as a task and blocks the calling (main, non event loop) thread until it is done.
func blockingAwait<T: Sendable>(_ body: @escaping @Sendable () async -> T) -> T {
    let result = NIOLockedValueBox<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    Task {
        let value = await body()
        result.withLockedValue { $0 = value }
        done.signal()
    }
    done.wait()
    return result.withLockedValue { $0! }
}

/// Server events of one connection, pumped off its stream with their arrival time.
final class Mailbox: @unchecked Sendable {
    private let lock = NIOLock()
    private var items: [(ns: UInt64, message: ServerMessage)] = []
    private var finished = false

    init(_ connection: ChatConnection) {
        Task {
            for await m in connection.events {
                let now = nowNs()
                self.lock.withLock { self.items.append((now, m)) }
            }
            self.lock.withLock { self.finished = true }
        }
    }

    /// The first event matching `match` (removed), with its arrival time; nil after `timeout` s.
    func take(timeout: Double, _ match: @escaping (ServerMessage) -> Bool) async -> (ns: UInt64, message: ServerMessage)? {
        let end = nowNs() + UInt64(timeout * 1e9)
        while true {
            let found: (UInt64, ServerMessage)?? = lock.withLock {
                if let i = items.firstIndex(where: { match($0.message) }) { return .some(items.remove(at: i)) }
                return finished ? .some(nil) : nil
            }
            if let found { return found }
            if nowNs() >= end { return nil }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
    }
}

/// The receiving end's accounting: sequence numbers per phase (slot), latency of the measured window.
final class PeerReceiver: @unchecked Sendable {
    private let lock = NIOLock()
    private var expected: [UInt64] = [0, 0]
    private var unique: [UInt64] = [0, 0]
    private var dups: [UInt64] = [0, 0]
    private var gaps: [UInt64] = [0, 0]
    private var textBytes: [UInt64] = [0, 0]
    private var lastNs: [UInt64] = [0, 0]
    private var window: (UInt64, UInt64) = (.max, .max)
    private var hist = makeHistogram()
    private var malformed = 0
    private var byeReason: String?
    private var closedWith: String?
    private var isClosed = false

    struct Totals: Sendable {
        var unique: UInt64, dups: UInt64, gaps: UInt64, textBytes: UInt64, lastNs: UInt64
    }

    func setWindow(_ start: UInt64, _ end: UInt64) { lock.withLock { window = (start, end) } }

    func totals(_ slot: Int) -> Totals {
        lock.withLock { Totals(unique: unique[slot], dups: dups[slot], gaps: gaps[slot], textBytes: textBytes[slot], lastNs: lastNs[slot]) }
    }

    func received(_ slot: Int) -> UInt64 { lock.withLock { unique[slot] } }
    var histogram: Histogram<UInt64> { lock.withLock { hist } }
    var problems: (malformed: Int, bye: String?, closed: String?, isClosed: Bool) {
        lock.withLock { (malformed, byeReason, closedWith, isClosed) }
    }

    /// Reads the link's events until it closes.
    func consume(_ link: PrivateLink) async {
        for await event in link.events {
            switch event {
            case .text(let text):
                let now = nowNs()
                var t = text
                t.withUTF8 { record(UnsafeRawBufferPointer($0), now: now) }
            case .bye(let reason):
                lock.withLock { byeReason = reason }
            case .closed(let error):
                lock.withLock {
                    isClosed = true
                    closedWith = error.map { "\($0)" } ?? "closed"
                }
            }
        }
    }

    /// `PBT<slot>.<seq>.<ts>.` + padding.
    private func record(_ raw: UnsafeRawBufferPointer, now: UInt64) {
        var i = 3
        guard raw.count > 3, find(marker, in: raw) == 0, let slot = scanUInt(raw, &i), slot < 2, i < raw.count,
            raw[i] == UInt8(ascii: ".")
        else { return lock.withLock { malformed += 1 } }
        i += 1
        guard let seq = scanUInt(raw, &i), i < raw.count, raw[i] == UInt8(ascii: ".") else { return lock.withLock { malformed += 1 } }
        i += 1
        guard let ts = scanUInt(raw, &i) else { return lock.withLock { malformed += 1 } }
        let s = Int(slot)
        lock.withLock {
            if seq < expected[s] {
                dups[s] += 1
                return
            }
            if seq > expected[s] { gaps[s] += 1 }
            expected[s] = seq + 1
            unique[s] += 1
            textBytes[s] += UInt64(raw.count)
            lastNs[s] = now
            if s == 0, ts >= window.0, ts < window.1 { _ = hist.record(now > ts ? now - ts : 0) }
        }
    }
}

/// Text of a timed private message (digits, dots and x: no JSON escaping).
func timedText(slot: Int, seq: UInt64, ts: UInt64, padding: Int) -> String {
    "PBT\(slot).\(seq).\(ts)." + String(repeating: "x", count: padding)
}

func ms(_ from: UInt64, _ to: UInt64) -> Figure { .double(to > from ? Double(to - from) / 1e6 : 0, decimals: 2) }
