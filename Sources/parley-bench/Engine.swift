#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Histogram
import NIOCore
import NIOPosix
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

final class Engine: @unchecked Sendable {
    let group: MultiThreadedEventLoopGroup
    let loop: EventLoop
    let tls: TLSContext
    let host: String
    let port: Int
    /// Cluster nodes: client i connects to `ports[i % ports.count]` (just `[port]` for one server).
    let ports: [Int]
    let serverName: String

    // delivery accounting
    var marks: [UInt64] = []
    var marksFinal = false
    var hists: [Histogram<UInt64>] = []
    var windowCounts: [UInt64] = []
    var totalUnique: UInt64 = 0
    var dups: UInt64 = 0
    var gaps: UInt64 = 0
    var lastDeliveryNs: UInt64 = 0
    var loggedOut = 0
    var serverErrors = 0
    var firstProblem: String?
    var unexpectedCloses = 0
    var sendErrors = 0

    // sending
    var senders: [BenchClient] = []
    var sentTotal: UInt64 = 0
    var expectedPerMessage: UInt64 = 1
    var padding = 0
    var sending = false
    var openLoop = false
    var maxInflight: UInt64 = 100
    var sendStartNs: UInt64 = 0
    var rate: Double = 0
    var stopNs: UInt64 = .max
    var ticker: RepeatedTask?

    // handshake scenario
    var handshakesCounted = 0
    var handshakeFailures = 0
    var hsWindow: (UInt64, UInt64) = (0, 0)
    var hsHist = makeHistogram()
    var hsRunning = false

    init(host: String, port: Int, alsoPorts: [Int] = [], serverName: String, caPath: String) throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = group.next()
        self.tls = try TLSContext(role: .client(trustedCAPath: caPath))
        self.host = host
        self.port = port
        self.ports = [port] + alsoPorts
        self.serverName = serverName
    }

    /// Runs `body` on the loop and waits for its result (main thread only).
    func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        try! loop.submit(body).wait()
    }

    func shutdown() {
        try? group.syncShutdownGracefully()
    }

    // MARK: connecting

    func connect(_ client: BenchClient, port: Int? = nil) -> EventLoopFuture<Void> {
        let promise = loop.makePromise(of: Void.self)
        client.loginDone = promise
        client.state = .connecting
        client.connectStartNs = nowNs()
        let tls = self.tls
        let serverName = self.serverName
        let engine = self
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(10))
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(
                            context: tls, serverHostname: serverName, handshakeTimeout: .seconds(20),
                            closeNotifyTimeout: .milliseconds(500)),
                        ByteToMessageHandler(FrameDecoder()),
                        BenchHandler(client: client, engine: engine),
                    ])
                }
            }
            .connect(host: host, port: port ?? ports[client.index % ports.count])
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    client.channel = channel
                    if client.state == .connecting { client.state = .handshaking }
                case .failure(let error):
                    client.state = .failed
                    client.failure = "connect: \(error)"
                    promise.fail(error)
                    client.loginDone = nil
                }
            }
        return promise.futureResult
    }

    /// Connects (and logs in) `clients` with at most `concurrency` in progress; the future
    /// succeeds with the number that failed once all settled, or fails at `deadlineNs`.
    func connectAll(_ clients: [BenchClient], concurrency: Int, timeout: TimeAmount) -> EventLoopFuture<Int> {
        let all = loop.makePromise(of: Int.self)
        guard !clients.isEmpty else {
            all.succeed(0)
            return all.futureResult
        }
        var next = 0
        var settled = 0
        var failed = 0
        var done = false
        // Everything below runs on `loop` (the caller submits it there), so the loop-isolated
        // NIO calls may capture this function's plain local state.
        let isolated = loop.assumeIsolated()
        let timer = isolated.scheduleTask(in: timeout) {
            guard !done else { return }
            done = true
            all.fail(BenchError("login phase timed out after \(timeout.nanoseconds / 1_000_000_000) s: \(settled)/\(clients.count) settled, \(failed) failed"))
        }
        func startOne() {
            guard next < clients.count, !done else { return }
            let c = clients[next]
            next += 1
            connect(c).assumeIsolated().whenComplete { result in
                settled += 1
                if case .failure = result {
                    failed += 1
                    if self.firstProblem == nil { self.firstProblem = "\(c.name): \(c.failure ?? "\(result)")" }
                }
                if settled == clients.count, !done {
                    done = true
                    timer.cancel()
                    all.succeed(failed)
                } else {
                    startOne()
                }
            }
        }
        for _ in 0..<min(concurrency, clients.count) { startOne() }
        return all.futureResult
    }

    /// Closes every channel (TLS close_notify, bounded) and waits a little for it.
    func closeAll(_ clients: [BenchClient]) -> EventLoopFuture<Void> {
        let futures = clients.compactMap { c -> EventLoopFuture<Void>? in
            guard let ch = c.channel else { return nil }
            c.state = .closed
            ch.close(promise: nil)
            return ch.closeFuture
        }
        return EventLoopFuture.andAllComplete(futures, on: loop)
    }

    // MARK: deliveries

    @inline(__always)
    func windowIndex(_ ts: UInt64) -> Int {
        guard let first = marks.first, ts >= first else { return -1 }
        var i = marks.count - 1
        while marks[i] > ts { i -= 1 }
        if marksFinal && i == marks.count - 1 { return -1 }
        return i
    }

    /// Adds a window boundary (on the loop); a new histogram opens unless `final`.
    func mark(_ ns: UInt64, final: Bool = false) {
        marks.append(ns)
        if final { marksFinal = true } else {
            hists.append(makeHistogram())
            windowCounts.append(0)
        }
    }

    @inline(__always)
    func delivered(_ client: BenchClient, slot: Int, seq: UInt32, ts: UInt64, now: UInt64) {
        guard slot < client.expected.count else {
            // Clients outside the accounting (login-burst newcomers) have no expectations.
            if !client.expected.isEmpty { gaps += 1 }
            return
        }
        let exp = client.expected[slot]
        if seq < exp {
            dups += 1
            return
        }
        if seq > exp { gaps += 1 }
        client.expected[slot] = seq &+ 1
        totalUnique += 1
        lastDeliveryNs = now
        let w = windowIndex(ts)
        if w >= 0 {
            _ = hists[w].record(now > ts ? now - ts : 0)
            windowCounts[w] += 1
        }
    }

    // MARK: sending

    func startSending(rate: Double, startNs: UInt64, stopNs: UInt64) {
        self.rate = rate
        self.sendStartNs = startNs
        self.stopNs = stopNs
        self.openLoop = rate <= 0
        sending = true
        if openLoop {
            // Deliveries drive the pump (channelReadComplete); the ticker only starts it and
            // watches the stop time.
            ticker = loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(5)) { _ in self.tick() }
        } else {
            scheduleNext()
        }
    }

    func stopSending() {
        sending = false
        ticker?.cancel()
        ticker = nil
        nextSend?.cancel()
        nextSend = nil
    }

    var nextSend: Scheduled<Void>?

    /// Closed loop: a timer at the intended time of the next message (not a coarse tick, which
    /// would add up to one tick of fake latency).
    private func scheduleNext() {
        guard sending else { return }
        let intended = sendStartNs + UInt64(Double(sentTotal) * 1e9 / rate)
        let now = nowNs()
        let wait = intended > now ? Int64(intended - now) : 0
        nextSend = loop.scheduleTask(in: .nanoseconds(wait)) { self.tick() }
    }

    private func tick() {
        guard sending else { return }
        let now = nowNs()
        if now >= stopNs {
            stopSending()
            return
        }
        guard now >= sendStartNs else { return }
        if openLoop {
            pump()
            return
        }
        while true {
            // Timestamp = intended send time, so a stalled sender shows as latency (no coordinated omission).
            let intended = sendStartNs + UInt64(Double(sentTotal) * 1e9 / rate)
            guard intended <= now, intended < stopNs else { break }
            sendNext(ts: intended)
        }
        scheduleNext()
    }

    @inline(__always)
    func pump() {
        guard sending, openLoop else { return }
        let now = nowNs()
        guard now < stopNs else { return stopSending() }
        while sentTotal &* expectedPerMessage < totalUnique &+ maxInflight &* expectedPerMessage {
            sendNext(ts: nowNs())
        }
    }

    @inline(__always)
    private func sendNext(ts: UInt64) {
        let s = senders[Int(sentTotal % UInt64(senders.count))]
        s.send(ts: ts, padding: padding)
        sentTotal += 1
    }

    // MARK: handshake scenario

    func handshakeLoop(slots: Int, port: Int, startNs: UInt64, endNs: UInt64) {
        hsWindow = (startNs, endNs)
        hsRunning = true
        handshakesCounted = 0
        handshakeFailures = 0
        hsHist = makeHistogram()
        var serial = 0
        func cycle() {
            guard hsRunning, nowNs() < endNs else { return }
            serial += 1
            let c = BenchClient(index: serial, name: "", password: "", mode: .handshakeOnly)
            // Runs on `loop` (submitted there): loop-isolated calls keep the local state unshared.
            connect(c, port: port).assumeIsolated().whenComplete { result in
                if case .failure(let e) = result {
                    self.handshakeFailures += 1
                    if self.firstProblem == nil { self.firstProblem = "handshake: \(c.failure ?? "\(e)")" }
                }
                let next = { self.loop.assumeIsolated().execute { cycle() } }
                if let ch = c.channel { ch.closeFuture.assumeIsolated().whenComplete { _ in next() } } else { next() }
            }
        }
        for _ in 0..<slots { cycle() }
    }

    func handshakeCompleted(_ c: BenchClient, now: UInt64) {
        if now >= hsWindow.0 && now < hsWindow.1 {
            handshakesCounted += 1
            _ = hsHist.record(now - c.connectStartNs)
        }
    }
}
