import NIOCore
import ParleyProtocol
import ParleyProtocolNIO

/// Sits below the TLS handler for the server's first bytes. A server that refuses a connection
/// at accept (too many from this address) sends one plaintext `error` line instead of a TLS
/// handshake; no TLS record starts with `{`, so this tells the two apart, reports the refusal as
/// `ClientError.refused(code)` and closes. Anything else passes through, and the handler leaves.
/// The line is not authenticated, so only its code is kept (shown in the client's own words).
final class PlainRefusalHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// A refusal line longer than this is not one.
    static let maxLine = 512
    private var line: ByteBuffer?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if var pending = line {
            pending.writeBuffer(&bytes)
            return collect(context, pending)
        }
        guard bytes.getInteger(at: bytes.readerIndex, as: UInt8.self) == UInt8(ascii: "{") else {
            context.fireChannelRead(data)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
            return
        }
        collect(context, bytes)
    }

    private func collect(_ context: ChannelHandlerContext, _ bytes: ByteBuffer) {
        guard let newline = bytes.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            guard bytes.readableBytes <= Self.maxLine else {
                return refuse(context, .protocolViolation("the server sent plaintext instead of TLS"))
            }
            line = bytes
            return
        }
        let text = bytes.getSlice(at: bytes.readerIndex, length: newline - bytes.readerIndex) ?? ByteBuffer()
        if case .error(let code, _)? = try? ServerMessage.decode(from: text) {
            refuse(context, .refused(code))
        } else {
            refuse(context, .protocolViolation("the server sent plaintext instead of TLS"))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if line != nil {
            line = nil
            context.fireErrorCaught(ClientError.protocolViolation("the server sent plaintext instead of TLS"))
        }
        context.fireChannelInactive()
    }

    private func refuse(_ context: ChannelHandlerContext, _ error: ClientError) {
        line = nil
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}
