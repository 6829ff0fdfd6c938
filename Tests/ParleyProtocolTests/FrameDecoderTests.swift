import NIOCore
import NIOEmbedded
import Testing
@testable import ParleyProtocol
import ParleyProtocolNIO

@Suite struct FrameDecoderTests {
    private func channel(max: Int = Limits.maxFrameBytes) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: max)))
        return channel
    }

    private func write(_ channel: EmbeddedChannel, _ s: String) throws {
        try channel.writeInbound(ByteBuffer(string: s))
    }

    private func frames(_ channel: EmbeddedChannel) throws -> [String] {
        var result: [String] = []
        while let frame = try channel.readInbound(as: Frame.self) {
            switch frame {
            case .line(let b): result.append(String(buffer: b))
            case .tooLarge: result.append("<too large>")
            }
        }
        return result
    }

    @Test func splitAcrossReads() throws {
        let ch = try channel()
        try write(ch, #"{"type":"#)
        #expect(try frames(ch).isEmpty)
        try write(ch, #""whoelse"}"#)
        #expect(try frames(ch).isEmpty)
        try write(ch, "\n{\"a\"")
        #expect(try frames(ch) == [#"{"type":"whoelse"}"#])
        try write(ch, ":1}\n")
        #expect(try frames(ch) == [#"{"a":1}"#])
        #expect(try ch.finish().isClean)
    }

    @Test func manyLinesInOneRead() throws {
        let ch = try channel()
        try write(ch, (0..<100).map { "line\($0)\n" }.joined())
        #expect(try frames(ch) == (0..<100).map { "line\($0)" })
    }

    @Test func crlfAndEmptyLines() throws {
        let ch = try channel()
        try write(ch, "a\r\n\n\r\n\nb\nc\r")
        #expect(try frames(ch) == ["a", "b"])
        try write(ch, "\n")
        #expect(try frames(ch) == ["c"])
    }

    @Test func oversizedLineThenNormalLine() throws {
        let ch = try channel(max: 16)
        try write(ch, String(repeating: "x", count: 10))
        try write(ch, String(repeating: "x", count: 10))
        #expect(try frames(ch) == ["<too large>"])  // reported before the newline arrives
        try write(ch, String(repeating: "y", count: 1000))
        #expect(try frames(ch).isEmpty)              // reported once, rest discarded
        try write(ch, "zzz\nok\n")
        #expect(try frames(ch) == ["ok"])
    }

    @Test func oversizedLineArrivingWhole() throws {
        let ch = try channel(max: 4)
        try write(ch, "12345\n1234\n1234\r\n")
        #expect(try frames(ch) == ["<too large>", "1234", "1234"])
    }

    @Test func framerMemoryIsBounded() {
        var framer = LineFramer(maxFrameBytes: 1024)
        var buffer = ByteBuffer()
        var reported = 0
        for _ in 0..<100 {
            buffer.writeRepeatingByte(UInt8(ascii: "x"), count: 4096)
            while let frame = framer.next(&buffer) {
                #expect(frame == .tooLarge)
                reported += 1
            }
            // Nothing from the oversized line is retained between reads.
            #expect(buffer.readableBytes <= 1025)
        }
        #expect(reported == 1)
        buffer.writeString("tail\nhello\n")
        #expect(framer.next(&buffer) == .line(ByteBuffer(string: "hello")))
        #expect(framer.next(&buffer) == nil)
    }

    @Test func partialLineAtEOFIsDropped() throws {
        let ch = try channel()
        try write(ch, "done\npartial")
        #expect(try frames(ch) == ["done"])
        _ = try ch.finish()
        #expect(try frames(ch).isEmpty)
    }
}
