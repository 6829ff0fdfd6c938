import NIOCore
import ParleyProtocol
import ParleyProtocolNIO
import Testing

@Suite struct PrivateFrameTests {
    static let value = SafetyValue(bytes: Array(0..<32))!
    static let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

    static let all: [PrivateFrame] = [
        .open(linkID: "abc"), .commit(value), .nonce(value), .reveal(value), .welcome, .text("hi\nthere"), .bye(reason: "x"),
    ]

    private func decode(_ s: String) throws(ProtocolError) -> PrivateFrame {
        try PrivateFrame.decode(from: ByteBuffer(string: s))
    }

    @Test(arguments: all)
    func roundTrip(_ frame: PrivateFrame) throws {
        let buffer = frame.buffer()
        #expect(buffer.readableBytesView.last == UInt8(ascii: "\n"))
        #expect(try PrivateFrame.decode(from: ByteBuffer(bytes: buffer.readableBytesView.dropLast())) == frame)
    }

    @Test func exchangeFramesHaveExactBytes() {
        #expect(String(buffer: PrivateFrame.commit(Self.value).buffer()) == #"{"type":"commit","commitment":"\#(Self.hex)"}"# + "\n")
        #expect(String(buffer: PrivateFrame.nonce(Self.value).buffer()) == #"{"type":"nonce","nonce":"\#(Self.hex)"}"# + "\n")
        #expect(String(buffer: PrivateFrame.reveal(Self.value).buffer()) == #"{"type":"reveal","nonce":"\#(Self.hex)"}"# + "\n")
        #expect(Self.value.hex == Self.hex && SafetyValue(hex: Self.hex) == Self.value)
    }

    @Test func exchangeValuesMustBeExactly64LowercaseHexDigits() {
        let short = String(Self.hex.dropLast())
        let long = Self.hex + "0"
        let upper = Self.hex.uppercased()  // same bytes, second spelling: refused
        let nonHex = "g" + Self.hex.dropFirst()
        let padded = short + " "
        for bad in [short, long, upper, nonHex, padded, ""] {
            for (type, field) in [("commit", "commitment"), ("nonce", "nonce"), ("reveal", "nonce")] {
                #expect(throws: ProtocolError(.badFrame, "expected 64 lowercase hex digits for field '\(field)'")) {
                    try decode(#"{"type":"\#(type)","\#(field)":"\#(bad)"}"#)
                }
            }
            #expect(SafetyValue(hex: bad) == nil, "\(bad)")
        }
        #expect(throws: ProtocolError(.badFrame, "missing field 'commitment'")) { try decode(#"{"type":"commit"}"#) }
        #expect(throws: ProtocolError(.badFrame, "expected a string for field 'nonce'")) { try decode(#"{"type":"reveal","nonce":7}"#) }
        // The commitment travels in `commitment`, not `nonce`: a commit with the wrong member is refused.
        #expect(throws: ProtocolError.self) { try decode(#"{"type":"commit","nonce":"\#(Self.hex)"}"#) }
        #expect(SafetyValue(bytes: Array(repeating: 0, count: 31)) == nil)
        #expect(SafetyValue(bytes: Array(repeating: 0, count: 33)) == nil)
    }

    @Test func unknownPrivateFrameTypeIsRefused() {
        #expect(throws: ProtocolError(.unknownType, "unknown private frame type 'confirm'")) { try decode(#"{"type":"confirm"}"#) }
    }
}
