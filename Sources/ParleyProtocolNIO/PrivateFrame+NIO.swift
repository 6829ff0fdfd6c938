import NIOCore
import ParleyProtocol

extension PrivateFrame {
    /// Decodes one frame line (as produced by `FrameDecoder`, without its newline).
    public static func decode(from buffer: ByteBuffer) throws(ProtocolError) -> PrivateFrame {
        let r: Result<PrivateFrame, ProtocolError> = buffer.withUnsafeReadableBytes { raw in
            do throws(ProtocolError) { return .success(try decode(bytes: raw)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// This frame encoded into a fresh buffer.
    public func buffer(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        encode(to: &buffer)
        return buffer
    }
}
