import NIOCore
import ParleyTLS

/// The server side of one logged-in user: what the fan-out writes to. Lives on its channel's
/// event loop and is only touched there.
final class Session: @unchecked Sendable {
    // @unchecked: every mutable member is read and written on `eventLoop` only (asserted).
    let name: String
    let displayName: String
    let eventLoop: EventLoop
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
    private let allocator: ByteBufferAllocator
    /// Gathered bytes are handed to the pipeline early past this size (memory stays bounded).
    private static let maxPendingBytes = 64 * 1024
    /// Called (on the loop) when the client stopped reading and its backlog passed the limit.
    var onSlowConsumer: (() -> Void)?

    init(name: String, displayName: String, context: ChannelHandlerContext, shard: LoopShard, maxBacklog: Int) {
        self.name = name
        self.displayName = displayName
        self.eventLoop = context.eventLoop
        self.context = context
        self.allocator = context.channel.allocator
        self.tls = try? context.pipeline.syncOperations.handler(type: TLSHandler.self)
        self.shard = shard
        self.maxBacklog = maxBacklog
    }

    /// Queues one frame; the flush happens once per loop pass for all frames queued in it.
    /// Returns false when the session has ended (the caller keeps the message some other way).
    @discardableResult
    func send(_ frame: ByteBuffer) -> Bool {
        eventLoop.preconditionInEventLoop()
        guard isOpen else { return false }
        if !writable {
            backlogBytes += frame.readableBytes
            if backlogBytes > maxBacklog {
                // Once: the callback ends this session, and nothing more is queued to it.
                let callback = onSlowConsumer
                onSlowConsumer = nil
                callback?()
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
                var own = allocator.buffer(capacity: max(1024, 4 * frame.readableBytes))
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
}

/// The sessions on one event loop. Touched only on that loop, so fan-out needs no lock.
final class LoopShard: @unchecked Sendable {
    // @unchecked: all state is confined to `eventLoop` (asserted in every entry point).
    let eventLoop: EventLoop
    private var sessions: [String: Session] = [:]
    /// The same sessions as an array: fan-out iterates this (cheaper than a dictionary walk).
    private var members: [Session] = []
    private var dirty: [Session] = []
    /// The previous pass's batch, kept for its capacity (no array allocation per pass).
    private var flushing: [Session] = []
    private var flushScheduled = false
    private var lastFlush = NIODeadline.uptimeNanoseconds(0)
    private let minFlushInterval: TimeAmount

    /// `minFlushInterval`: under load, flush passes are at least this far apart, so each client
    /// gets several messages per TLS record and write(2); a quiet server flushes at the end of
    /// the loop pass, adding no delay.
    init(eventLoop: EventLoop, minFlushInterval: TimeAmount = .zero) {
        self.eventLoop = eventLoop
        self.minFlushInterval = minFlushInterval
    }

    func add(_ session: Session) {
        eventLoop.preconditionInEventLoop()
        if let old = sessions.updateValue(session, forKey: session.name) {
            members.removeAll { $0 === old }
        }
        members.append(session)
    }

    func remove(_ session: Session) {
        eventLoop.preconditionInEventLoop()
        if sessions[session.name] === session {
            sessions[session.name] = nil
            if let index = members.firstIndex(where: { $0 === session }) { members.swapAt(index, members.count - 1); members.removeLast() }
        }
    }

    func session(named name: String) -> Session? {
        eventLoop.preconditionInEventLoop()
        return sessions[name]
    }

    /// Writes one already-encoded frame to every local session except `sender` and `skip`.
    func fanOut(_ frame: ByteBuffer, except sender: String, skipping skip: Set<String>) {
        eventLoop.preconditionInEventLoop()
        let except = sessions[sender]
        if skip.isEmpty {
            for session in members where session !== except { session.send(frame) }
        } else {
            for session in members where session !== except && !skip.contains(session.name) { session.send(frame) }
        }
    }

    /// One flush per dirty session per loop pass: many queued frames leave as few TLS records.
    func markDirty(_ session: Session) {
        dirty.append(session)
        guard !flushScheduled else { return }
        flushScheduled = true
        let earliest = lastFlush + minFlushInterval
        if minFlushInterval == .zero || earliest <= .now() {
            eventLoop.assumeIsolated().execute { [self] in flushAll() }
        } else {
            eventLoop.assumeIsolated().scheduleTask(deadline: earliest) { [self] in flushAll() }
        }
    }

    private func flushAll() {
        flushScheduled = false
        lastFlush = .now()
        swap(&dirty, &flushing)
        for session in flushing { session.flushIfDirty() }
        flushing.removeAll(keepingCapacity: true)
    }
}
