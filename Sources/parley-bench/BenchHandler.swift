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
