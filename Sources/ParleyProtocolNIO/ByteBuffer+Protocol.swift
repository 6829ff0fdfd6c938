import NIOCore
import ParleyProtocol

extension ByteBuffer: JSONOutput {
    @inlinable public mutating func appendByte(_ byte: UInt8) { writeInteger(byte) }
    @inlinable public mutating func appendBytes(_ bytes: UnsafeRawBufferPointer) { writeBytes(bytes) }
}

extension Request {
    /// Decodes one frame line (as produced by `FrameDecoder`, without its newline).
    public static func decode(from buffer: ByteBuffer) throws(ProtocolError) -> (id: Int64?, request: Request) {
        let r: Result<(id: Int64?, request: Request), ProtocolError> = buffer.withUnsafeReadableBytes { raw in
            do throws(ProtocolError) { return .success(try decode(bytes: raw)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// Appends this request as one frame, newline included, to `buffer`.
    public func encode(id: Int64?, into buffer: inout ByteBuffer) {
        encode(id: id, to: &buffer)
    }
}

extension ServerMessage {
    /// Decodes one frame line (without its newline).
    public static func decode(from buffer: ByteBuffer) throws(ProtocolError) -> ServerMessage {
        let r: Result<ServerMessage, ProtocolError> = buffer.withUnsafeReadableBytes { raw in
            do throws(ProtocolError) { return .success(try decode(bytes: raw)) } catch { return .failure(error) }
        }
        return try r.get()
    }

    /// Appends this message as one frame, newline included, to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        encode(to: &buffer)
    }

    /// Encodes this message once into a fresh buffer, e.g. to fan the same bytes out to many channels.
    public func frame(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 128)
        encode(to: &buffer)
        return buffer
    }
}
