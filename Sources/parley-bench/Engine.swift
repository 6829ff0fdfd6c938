#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Histogram
import NIOCore
import NIOPosix
import ParleyProtocol
import ParleyTLS

// Everything below runs on ONE event loop (the bench's only NIO thread): the classes are
// loop-confined, hence @unchecked Sendable. The main thread only touches them through
// `Engine.onLoop`.

enum ClientMode { case login, handshakeOnly }

enum ClientState { case idle, connecting, handshaking, loggingIn, online, closed, failed }

/// Text of a timed message: `PBT<slot>.<seq>.<ts>.` + padding (digits and dots only: JSON-safe).
let marker: StaticString = "PBT"

final class BenchClient: @unchecked Sendable {
    let index: Int
    let name: String
    let password: String
    let mode: ClientMode
    var channel: Channel?
    var state: ClientState = .idle
    var connectStartNs: UInt64 = 0
    var handshakeNs: UInt64 = 0
    var loginOkNs: UInt64 = 0
    var loginDone: EventLoopPromise<Void>?
    var loginRetries = 0
    var created = false
    var failure: String?
    /// Next expected sequence number per sender slot (fan-out: one per sender; direct: one).
    var expected: [UInt32] = []
    /// Sender slot (-1: not a sender) and the bytes every message it sends starts with.
    var slot = -1
    var prefix: [UInt8] = []
    var seq: UInt32 = 0
    /// Offline scenario: ack every stored message and check their order.
    var ackStored = false
    var storedReceived = 0
    var storedDup = 0
    var storedOutOfOrder = 0
    var storedNextSeq: UInt64 = 0
    var storedLastNs: UInt64 = 0
    var repliesOK = 0
    var repliesError = 0

    init(index: Int, name: String, password: String, mode: ClientMode) {
        self.index = index
        self.name = name
        self.password = password
        self.mode = mode
    }

    var loginLatencyNs: UInt64 { loginOkNs > connectStartNs ? loginOkNs - connectStartNs : 0 }

    /// Makes this client a sender: `{"type":"broadcast","text":"PBT<slot>.` or a message to `to`.
    func makeSender(slot: Int, to recipient: String?) {
        self.slot = slot
        var s: String
        if let recipient {
            s = "{\"type\":\"message\",\"to\":\"\(recipient)\",\"text\":\"PBT\(slot)."
        } else {
            s = "{\"type\":\"broadcast\",\"text\":\"PBT\(slot)."
        }
        prefix = Array(s.utf8)
        s = ""
    }

    /// Writes one timed message (`ts` = its send time, ns). The only allocation is the buffer.
    func send(ts: UInt64, padding: Int) {
        guard let channel, state == .online else { seq &+= 1; return }
        var buf = channel.allocator.buffer(capacity: prefix.count + 48 + padding)
        buf.writeBytes(prefix)
        buf.writeDecimal(UInt64(seq))
        buf.writeInteger(UInt8(ascii: "."))
        buf.writeDecimal(ts)
        buf.writeInteger(UInt8(ascii: "."))
        if padding > 0 { buf.writeRepeatingByte(UInt8(ascii: "x"), count: padding) }
        buf.writeStaticString("\"}\n")
        seq &+= 1
        channel.writeAndFlush(buf, promise: nil)
    }

    func write(_ s: String) {
        guard let channel else { return }
        var buf = channel.allocator.buffer(capacity: s.utf8.count)
        buf.writeString(s)
        channel.writeAndFlush(buf, promise: nil)
    }

    func sendLogin() {
        state = .loggingIn
        write("{\"type\":\"login\",\"username\":\"\(name)\",\"password\":\"\(password)\",\"id\":1}\n")
    }
}

extension ByteBuffer {
    /// ASCII decimal without going through String.
    @inline(__always)
    mutating func writeDecimal(_ value: UInt64) {
        var digits = 1
        var t = value
        while t >= 10 { t /= 10; digits += 1 }
        let start = writerIndex
        writeRepeatingByte(48, count: digits)
        var v = value
        var i = start + digits - 1
        repeat {
            setInteger(UInt8(48 + v % 10), at: i)
            v /= 10
            i -= 1
        } while v > 0
    }
}

final class Engine: @unchecked Sendable {
    let group: MultiThreadedEventLoopGroup
    let loop: EventLoop
    let tls: TLSContext
    let host: String
    let port: Int
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

    init(host: String, port: Int, serverName: String, caPath: String) throws {
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = group.next()
        self.tls = try TLSContext(role: .client(trustedCAPath: caPath))
        self.host = host
        self.port = port
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
            .connect(host: host, port: port ?? self.port)
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
        let timer = loop.scheduleTask(in: timeout) {
            guard !done else { return }
            done = true
            all.fail(BenchError("login phase timed out after \(timeout.nanoseconds / 1_000_000_000) s: \(settled)/\(clients.count) settled, \(failed) failed"))
        }
        func startOne() {
            guard next < clients.count, !done else { return }
            let c = clients[next]
            next += 1
            connect(c).whenComplete { result in
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
            connect(c, port: port).whenComplete { result in
                if case .failure(let e) = result {
                    self.handshakeFailures += 1
                    if self.firstProblem == nil { self.firstProblem = "handshake: \(c.failure ?? "\(e)")" }
                }
                let next = { self.loop.execute { cycle() } }
                if let ch = c.channel { ch.closeFuture.whenComplete { _ in next() } } else { next() }
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

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The per-connection handler: above TLS and the line framer; scans frames by bytes.
final class BenchHandler: ChannelInboundHandler {
    typealias InboundIn = Frame

    let client: BenchClient
    let engine: Engine

    init(client: BenchClient, engine: Engine) {
        self.client = client
        self.engine = engine
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let ev = event as? TLSEvent, case .handshakeCompleted = ev {
            let now = nowNs()
            client.handshakeNs = now
            switch client.mode {
            case .handshakeOnly:
                engine.handshakeCompleted(client, now: now)
                client.state = .closed
                client.loginDone?.succeed(())
                client.loginDone = nil
                context.close(promise: nil)
            case .login:
                client.sendLogin()
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let line) = unwrapInboundIn(data) else { return }
        line.withUnsafeReadableBytes { raw in handle(raw) }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if engine.openLoop { engine.pump() }
    }

    @inline(__always)
    private func handle(_ raw: UnsafeRawBufferPointer) {
        // Frames start with {"type":"<type>" (the server writes type first).
        let t = raw.count > 10 && raw[1] == UInt8(ascii: "\"") && raw[2] == UInt8(ascii: "t") ? raw[9] : 0
        switch t {
        case UInt8(ascii: "b"), UInt8(ascii: "m"):  // broadcast, message
            timed(raw)
        case UInt8(ascii: "r"):  // reply
            reply(raw)
        case UInt8(ascii: "p"), UInt8(ascii: "h"):  // presence, private*, hello
            return
        case UInt8(ascii: "l"):  // loggedout
            engine.loggedOut += 1
            if engine.firstProblem == nil { engine.firstProblem = "\(client.name): " + String(decoding: raw, as: UTF8.self) }
        case UInt8(ascii: "e"):
            engine.serverErrors += 1
            if engine.firstProblem == nil { engine.firstProblem = "\(client.name): " + String(decoding: raw, as: UTF8.self) }
        default:
            return
        }
    }

    @inline(__always)
    private func timed(_ raw: UnsafeRawBufferPointer) {
        let now = nowNs()
        var i = find(marker, in: raw)
        guard i >= 0 else { return }
        i += 3
        guard let slot = scanUInt(raw, &i), i < raw.count, raw[i] == UInt8(ascii: ".") else { return }
        i += 1
        guard let seq = scanUInt(raw, &i), i < raw.count, raw[i] == UInt8(ascii: ".") else { return }
        i += 1
        guard let ts = scanUInt(raw, &i) else { return }
        if client.ackStored {
            var d = find("\"delivery\":", in: raw)
            if d >= 0 {
                d += 11
                if let delivery = scanUInt(raw, &d) { stored(seq: seq, delivery: delivery, now: now) }
                return
            }
        }
        engine.delivered(client, slot: Int(slot), seq: UInt32(truncatingIfNeeded: seq), ts: ts, now: now)
    }

    private func stored(seq: UInt64, delivery: UInt64, now: UInt64) {
        client.storedReceived += 1
        client.storedLastNs = now
        if seq < client.storedNextSeq {
            client.storedDup += 1
        } else {
            if seq > client.storedNextSeq { client.storedOutOfOrder += 1 }
            client.storedNextSeq = seq + 1
        }
        guard let channel = client.channel else { return }
        var buf = channel.allocator.buffer(capacity: 48)
        buf.writeStaticString("{\"type\":\"ack\",\"delivery\":")
        buf.writeDecimal(delivery)
        buf.writeStaticString("}\n")
        channel.writeAndFlush(buf, promise: nil)
    }

    private func reply(_ raw: UnsafeRawBufferPointer) {
        let ok = find("\"status\":\"ok\"", in: raw) >= 0
        if client.state == .loggingIn {
            if ok {
                client.state = .online
                client.loginOkNs = nowNs()
                client.created = find("\"created\":true", in: raw) >= 0
                client.loginDone?.succeed(())
                client.loginDone = nil
            } else if find("rate_limited", in: raw) >= 0 && client.loginRetries < 100 {
                // The server's hashing queue is full: back off and try again on this connection.
                client.loginRetries += 1
                let c = client
                let delay = Int64(min(1000, 50 * client.loginRetries))
                engine.loop.scheduleTask(in: .milliseconds(delay)) { c.sendLogin() }
                client.state = .handshaking
            } else {
                let text = String(decoding: raw, as: UTF8.self)
                client.state = .failed
                client.failure = "login refused: \(text)"
                client.loginDone?.fail(BenchError(client.failure!))
                client.loginDone = nil
                client.channel?.close(promise: nil)
            }
            return
        }
        if ok {
            client.repliesOK += 1
        } else {
            client.repliesError += 1
            engine.sendErrors += 1
            if engine.firstProblem == nil { engine.firstProblem = "\(client.name): " + String(decoding: raw, as: UTF8.self) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let p = client.loginDone {
            client.loginDone = nil
            client.state = .failed
            p.fail(BenchError(client.failure ?? "connection closed before login"))
        } else if client.state == .online {
            engine.unexpectedCloses += 1
            client.state = .closed
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if client.failure == nil { client.failure = "\(error)" }
        context.close(promise: nil)
    }
}
