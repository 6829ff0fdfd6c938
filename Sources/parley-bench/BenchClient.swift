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
