import NIOCore

/// The server side of one logged-in user: what the fan-out writes to. Lives on its channel's
/// event loop and is only touched there.
final class Session: @unchecked Sendable {
    // @unchecked: every mutable member is read and written on `eventLoop` only (asserted).
    let name: String
    let displayName: String
    let eventLoop: EventLoop
    private let context: ChannelHandlerContext
    private let shard: LoopShard
    private let maxBacklog: Int
    private(set) var isOpen = true
    private var dirty = false
    private var backlogBytes = 0
    /// Mirrors the channel's writability (updated by the handler) without a pipeline lookup per send.
    private var writable = true
    /// Called (on the loop) when the client stopped reading and its backlog passed the limit.
    var onSlowConsumer: (() -> Void)?

    init(name: String, displayName: String, context: ChannelHandlerContext, shard: LoopShard, maxBacklog: Int) {
        self.name = name
        self.displayName = displayName
        self.eventLoop = context.eventLoop
        self.context = context
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
                onSlowConsumer?()
                return true
            }
        }
        context.write(NIOAny(frame), promise: nil)
        if !dirty {
            dirty = true
            shard.markDirty(self)
        }
        return true
    }

    /// Sends now, bypassing coalescing (replies to the session's own commands go out with its flush).
    func flushIfDirty() {
        guard dirty else { return }
        dirty = false
        if isOpen { context.flush() }
    }

    func writabilityChanged(writable: Bool) {
        self.writable = writable
        if writable { backlogBytes = 0 }
    }

    func close() {
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
    private var flushScheduled = false

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
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
        eventLoop.assumeIsolated().execute { [self] in
            flushScheduled = false
            let batch = dirty
            dirty.removeAll(keepingCapacity: true)
            for session in batch { session.flushIfDirty() }
        }
    }
}
