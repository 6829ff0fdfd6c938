import Foundation
import NIOCore
import ParleyTLS

/// The server side of one logged-in user: what the fan-out writes to. Lives on its channel's
/// event loop and is only touched there.
final class OnlineUser: @unchecked Sendable {
    // @unchecked: every mutable member is read and written on `eventLoop` only (asserted).
    let name: String
    let displayName: String
    let eventLoop: EventLoop
    /// When the login succeeded (wall clock, for the operator's `who`).
    let loginTime: Date
    private let context: ChannelHandlerContext
    /// The connection's TLS handler: flushes hand gathered frames straight to it (one call instead
    /// of a trip through the pipeline; the hottest path of a fan-out). Nil only in a pipeline
    /// without TLS.
    private let tls: TLSHandler?
    private let shard: LoopShard
    private let maxBacklog: Int
    private(set) var isOpen = true
    private var dirty = false
    private var backlogBytes = 0
    /// Mirrors the channel's writability (updated by the handler) without a pipeline lookup per send.
    private var writable = true
    /// Frames queued since the last flush (see `send`).
    private var pending: ByteBuffer?
    private var gatheredFrames = 0
    /// The slow-consumer end was reported to the handler (it ends the session; once is enough).
    private var reportedSlow = false
    /// Gathered bytes are handed to the pipeline early past this size (memory stays bounded).
    private static let maxPendingBytes = 64 * 1024

    init(name: String, displayName: String, context: ChannelHandlerContext, shard: LoopShard, maxBacklog: Int) {
        self.name = name
        self.displayName = displayName
        self.eventLoop = context.eventLoop
        self.loginTime = Date()
        self.context = context
        self.tls = try? context.pipeline.syncOperations.handler(type: TLSHandler.self)
        self.shard = shard
        self.maxBacklog = maxBacklog
    }

    /// Counts a message delivered to this session in its shard's metrics (once per pass).
    func delivered() { shard.delivered() }

    /// Queues one frame; the flush happens once per loop pass for all frames queued in it.
    /// Returns false when the session has ended (the caller keeps the message some other way).
    @discardableResult
    func send(_ frame: ByteBuffer) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard isOpen else { return false }
        if !writable {
            backlogBytes += frame.readableBytes
            if backlogBytes > maxBacklog {
                // Once: the handler ends this session, and nothing more is queued to it. It is
                // reached through the context rather than a stored callback (no closure per user).
                if !reportedSlow {
                    reportedSlow = true
                    (context.handler as? ClientHandler)?.slowConsumer()
                }
                return true
            }
        }
        // Frames gather here and enter the pipeline once per flush: one pipeline trip, one
        // SSL_write and one write(2) for everything this client gets in a pass. The first frame is
        // kept by reference (fan-out shares one encoded buffer); later ones are appended.
        if var gathered = pending {
            // Taken out so the buffer is uniquely referenced while it grows (no copy-on-write).
            pending = nil
            if gatheredFrames == 1 {
                // The first frame is still the shared fan-out buffer: copy it once into room for
                // several more, instead of growing by doubling on every append.
                var own = context.channel.allocator.buffer(capacity: max(1024, 4 * frame.readableBytes))
                own.writeImmutableBuffer(gathered)
                gathered = own
            }
            gatheredFrames += 1
            gathered.writeImmutableBuffer(frame)
            if gathered.readableBytes >= Self.maxPendingBytes {
                context.write(NIOAny(gathered), promise: nil)
                gatheredFrames = 0
            } else {
                pending = gathered
            }
        } else {
            pending = frame
            gatheredFrames = 1
        }
        if !dirty {
            dirty = true
            shard.markDirty(self)
        }
        return true
    }

    /// Writes and flushes what this session has gathered (the shard calls it once per pass;
    /// the connection's own handler calls it when a frame must leave at once).
    func flushIfDirty() {
        guard dirty else { return }
        dirty = false
        guard isOpen else { return }
        if let frames = pending {
            pending = nil
            if let tls {
                tls.writeAndFlushDirectly(frames)
            } else {
                context.writeAndFlush(NIOAny(frames), promise: nil)
            }
        } else {
            context.flush()
        }
    }

    /// The connection's handler, for what reaches a user from outside its connection (cluster
    /// routing); nil once the handler left the pipeline. On `eventLoop` only.
    var handler: ClientHandler? {
        eventLoop.preconditionInEventLoop()
        return isOpen ? context.handler as? ClientHandler : nil
    }

    func writabilityChanged(writable: Bool) {
        self.writable = writable
        if writable { backlogBytes = 0 }
    }

    /// Ends the session for the fan-out; what it had gathered still goes out first.
    func close() {
        flushIfDirty()
        isOpen = false
    }

    /// Closes the channel (TLS close_notify first); completes when it is closed.
    func disconnect() -> EventLoopFuture<Void> {
        let promise = eventLoop.makePromise(of: Void.self)
        context.close(promise: promise)
        return promise.futureResult
    }

    // MARK: operator (admin socket), from any thread

    /// Ends the session on its own loop (`.kicked` or `.disabled`); true if it was logged in.
    func endByOperator(_ reason: EndReason) -> EventLoopFuture<Bool> {
        eventLoop.submit { [self] in
            guard isOpen, let handler = context.handler as? ClientHandler else { return false }
            return handler.endedByOperator(reason)
        }
    }

    /// Address and idle time read on the session's loop; nil once it ended.
    func operatorView() -> EventLoopFuture<OnlineSession?> {
        eventLoop.submit { [self] in
            guard isOpen, let handler = context.handler as? ClientHandler, let info = handler.sessionInfo else { return nil }
            return OnlineSession(name: displayName, address: info.address, loginTime: loginTime, idle: info.idle)
        }
    }
}

/// One logged-in user as the operator's `who` lists them.
struct OnlineSession: Sendable, Equatable {
    let name: String
    let address: String
    let loginTime: Date
    let idle: TimeAmount
}
