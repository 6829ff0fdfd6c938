import NIOCore
import ParleyProtocol

/// One inbound frame from `FrameDecoder`.
public enum Frame: Sendable, Hashable {
    /// One line without its `\n` (or `\r\n`); never empty.
    case line(ByteBuffer)
    /// A line exceeded the size limit; its bytes were dropped up to the next newline.
    case tooLarge
}

/// The newline framing state machine, separate from the channel handler so it is testable alone.
///
/// Memory stays bounded: once more than `maxFrameBytes` (+1 for a possible `\r`) bytes are
/// buffered without a newline, they are consumed and the framer discards until the next `\n`.
public struct LineFramer: Sendable {
    /// Longest accepted line, excluding the line terminator.
    public let maxFrameBytes: Int
    private var discarding = false
    // How far the current partial line was already searched, so trickled input is scanned once.
    private var scanned = 0

    public init(maxFrameBytes: Int = Limits.maxFrameBytes) {
        precondition(maxFrameBytes > 0)
        self.maxFrameBytes = maxFrameBytes
    }

    /// Consumes bytes from `buffer` and returns the next frame, or nil when more input is needed.
    public mutating func next(_ buffer: inout ByteBuffer) -> Frame? {
        while true {
            let view = buffer.readableBytesView
            if discarding {
                guard let nl = view.firstIndex(of: UInt8(ascii: "\n")) else {
                    buffer.moveReaderIndex(forwardBy: view.count)
                    return nil
                }
                buffer.moveReaderIndex(to: nl + 1)
                discarding = false
                continue
            }
            let searchFrom = view.startIndex + scanned
            guard let nl = view[searchFrom...].firstIndex(of: UInt8(ascii: "\n")) else {
                if view.count > maxFrameBytes + 1 {
                    buffer.moveReaderIndex(forwardBy: view.count)
                    discarding = true
                    scanned = 0
                    return .tooLarge
                }
                scanned = view.count
                return nil
            }
            scanned = 0
            let total = nl - view.startIndex
            var length = total
            if length > 0 && view[nl - 1] == UInt8(ascii: "\r") { length -= 1 }
            if length > maxFrameBytes {
                buffer.moveReaderIndex(forwardBy: total + 1)
                return .tooLarge
            }
            if length == 0 {
                buffer.moveReaderIndex(forwardBy: total + 1)
                continue
            }
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: total - length + 1)
            return .line(line)
        }
    }
}

/// Splits an inbound byte stream into newline-terminated frames (see `Frame`).
public struct FrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Frame

    private var framer: LineFramer

    public init(maxFrameBytes: Int = Limits.maxFrameBytes) {
        framer = LineFramer(maxFrameBytes: maxFrameBytes)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = framer.next(&buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while let frame = framer.next(&buffer) {
            context.fireChannelRead(wrapInboundOut(frame))
        }
        // An unterminated tail at EOF is an incomplete frame: drop it rather than guess.
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .needMoreData
    }
}
