import NIOCore
internal import COpenSSL

/// The two ends of OpenSSL's I/O as `ByteBuffer`s: OpenSSL reads ciphertext straight from the
/// buffer the socket filled, and writes ciphertext into a buffer handed to the socket. Compared
/// with `BIO_s_mem`, this saves one copy each way and keeps nothing allocated while idle (a memory
/// BIO keeps its largest-ever buffer for the connection's life). `TLSConnection` inherits from it
/// so that each connection is one object, not two (idle memory).
class ByteBufferBIO {
    /// Ciphertext received and not yet consumed by OpenSSL.
    var inbound: ByteBuffer?
    /// Ciphertext OpenSSL produced, waiting to be written to the socket.
    var outbound: ByteBuffer?
    let allocator: ByteBufferAllocator

    init(allocator: ByteBufferAllocator) {
        self.allocator = allocator
    }

    /// Makes a BIO bound to this object, for both directions (one BIO per connection, not two); the
    /// caller keeps this object alive while the BIO lives.
    func makeBIO() -> OpaquePointer? {
        guard let bio = BIO_new(byteBufferBIOMethod) else { return nil }
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        BIO_set_init(bio, 1)
        return bio
    }

    func receive(_ buffer: inout ByteBuffer) {
        if inbound == nil || inbound!.readableBytes == 0 {
            inbound = buffer
        } else {
            inbound!.writeBuffer(&buffer)
        }
        buffer.moveReaderIndex(to: buffer.writerIndex)
    }

    func takeOutbound() -> ByteBuffer? {
        guard let out = outbound, out.readableBytes > 0 else { return nil }
        outbound = nil
        return out
    }

    fileprivate func write(_ bytes: UnsafeRawBufferPointer) {
        if outbound == nil {
            outbound = allocator.buffer(capacity: max(bytes.count, 512))
        }
        outbound!.writeBytes(bytes)
    }

    fileprivate func read(into out: UnsafeMutableRawBufferPointer) -> Int {
        guard var source = inbound, source.readableBytes > 0 else { return 0 }
        let count = min(out.count, source.readableBytes)
        source.withUnsafeReadableBytes { bytes in
            out.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: count)
        }
        source.moveReaderIndex(forwardBy: count)
        // Drop the reference once consumed, so the socket's buffer is not kept while idle.
        inbound = source.readableBytes > 0 ? source : nil
        return count
    }

    fileprivate var pendingInbound: Int { inbound?.readableBytes ?? 0 }
    fileprivate var pendingOutbound: Int { outbound?.readableBytes ?? 0 }
}

private func owner(_ bio: OpaquePointer?) -> ByteBufferBIO? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<ByteBufferBIO>.fromOpaque(data).takeUnretainedValue()
}

/// Runs `body` on the BIO's owner without a retain/release pair (once per record on the hot
/// path): the owner outlives every call OpenSSL makes through the BIO (see `makeBIO`).
private func withOwner<R>(_ bio: OpaquePointer?, _ body: (ByteBufferBIO) -> R) -> R? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<ByteBufferBIO>.fromOpaque(data)._withUnsafeGuaranteedRef(body)
}

/// One method table for every connection, made once.
// Immutable after creation; OpenSSL allows one BIO_METHOD to be shared by every thread.
nonisolated(unsafe) private let byteBufferBIOMethod: OpaquePointer = {
    let method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "parley ByteBuffer")!
    _ = BIO_meth_set_write(method) { bio, data, length in
        guard let data, length >= 0 else { return -1 }
        BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
        let wrote: Void? = withOwner(bio) { $0.write(UnsafeRawBufferPointer(start: data, count: Int(length))) }
        return wrote == nil ? -1 : length
    }
    _ = BIO_meth_set_read(method) { bio, data, length in
        guard let data, length > 0 else { return -1 }
        BIO_clear_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_WRITE | BIO_FLAGS_IO_SPECIAL | BIO_FLAGS_SHOULD_RETRY)
        guard let count = withOwner(bio, { $0.read(into: UnsafeMutableRawBufferPointer(start: data, count: Int(length))) })
        else { return -1 }
        if count == 0 {
            // Not EOF: "no data yet, try again" (what BIO_s_mem with eof_return -1 says).
            BIO_set_flags(bio, BIO_FLAGS_READ | BIO_FLAGS_SHOULD_RETRY)
            return -1
        }
        return Int32(count)
    }
    _ = BIO_meth_set_ctrl(method) { bio, command, _, _ in
        switch command {
        case BIO_CTRL_FLUSH: return 1
        case BIO_CTRL_PENDING: return owner(bio).map { $0.pendingInbound } ?? 0
        case BIO_CTRL_WPENDING: return owner(bio).map { $0.pendingOutbound } ?? 0
        case BIO_CTRL_GET_CLOSE, BIO_CTRL_SET_CLOSE: return 1
        default: return 0
        }
    }
    _ = BIO_meth_set_create(method) { bio in
        BIO_set_init(bio, 0)
        return 1
    }
    _ = BIO_meth_set_destroy(method) { bio in
        BIO_set_data(bio, nil)
        BIO_set_init(bio, 0)
        return 1
    }
    return method
}()
