import Foundation
import NIOCore
import NIOPosix
import ParleyProtocolNIO

/// The client side of the admin socket (`parley-server admin ...`, tests): sends one request and
/// returns the server's reply.
public enum AdminClient {
    /// Why no reply came.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        /// Nothing listens at the path (no server running there, or a stale file).
        case cannotConnect(String, reason: String)
        /// The server closed without a status line, or did not answer in time.
        case noReply(String)

        public var description: String {
            switch self {
            case .cannotConnect(let path, let reason): "cannot connect to the admin socket \(path): \(reason)"
            case .noReply(let why): "no answer from the admin socket: \(why)"
            }
        }
    }

    /// Sends `request` on the socket at `path` and waits (at most `timeout` seconds) for the reply.
    public static func send(
        _ request: AdminRequest, socket path: String, timeout: TimeInterval = 15,
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> AdminReply {
        try await send(line: request.line, socket: path, timeout: timeout, group: group)
    }

    /// Sends `line` as it is (tests send malformed ones) followed by a newline.
    static func send(line text: String, socket path: String, timeout: TimeInterval = 15,
                     group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> AdminReply {
        let collector = ReplyCollector()
        let channel: Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // Replies are the server's own short lines; a longer one means a wrong peer.
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: 4096)))
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
                .connect(unixDomainSocketPath: path).get()
        } catch {
            throw Failure.cannotConnect(path, reason: "\(error)")
        }
        let timer = channel.eventLoop.scheduleTask(in: .milliseconds(Int64(timeout * 1000))) {
            collector.timedOut = true
            channel.close(promise: nil)
        }
        var line = channel.allocator.buffer(capacity: 64)
        line.writeString(text + "\n")
        try? await channel.writeAndFlush(line)
        try? await channel.closeFuture.get()
        timer.cancel()
        let (lines, timedOut, tooLong) = try await channel.eventLoop.submit {
            (collector.lines, collector.timedOut, collector.tooLong)
        }.get()
        if timedOut { throw Failure.noReply("no reply within \(Int(timeout)) s") }
        if tooLong { throw Failure.noReply("a reply line was too long") }
        guard let reply = AdminReply.decode(lines: lines) else { throw Failure.noReply("the server closed without a status line") }
        return reply
    }

    /// Gathers reply lines on the channel's loop.
    private final class ReplyCollector: ChannelInboundHandler, @unchecked Sendable {
        // @unchecked: every member is touched on the channel's event loop only.
        typealias InboundIn = Frame
        var lines: [String] = []
        var timedOut = false
        var tooLong = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .line(let bytes):
                // Bounded: a peer that is not a Parley server cannot make this grow without limit.
                guard lines.count < 100_000 else { return context.close(promise: nil) }
                lines.append(String(decoding: bytes.readableBytesView, as: UTF8.self))
            case .tooLarge:
                tooLong = true
                context.close(promise: nil)
            }
        }
    }
}
