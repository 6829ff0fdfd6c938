import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// The sessions on one event loop. Touched only on that loop, so fan-out needs no lock.
final class LoopShard: @unchecked Sendable {
    // @unchecked: all state is confined to `eventLoop` (asserted in every entry point).
    let eventLoop: EventLoop
    private var onlineUsers: [String: OnlineUser] = [:]
    /// The same sessions as an array: fan-out iterates this (cheaper than a dictionary walk).
    private var members: [OnlineUser] = []
    private var dirty: [OnlineUser] = []
    /// The batch of the pass under way; emptied when it ends, its capacity kept (no array
    /// allocation per pass).
    private var flushing: [OnlineUser] = []
    /// How many of `flushing` the current pass has flushed.
    private var flushedInPass = 0
    private var flushScheduled = false
    private var lastFlush = NIODeadline.uptimeNanoseconds(0)
    private let minFlushInterval: TimeAmount
    /// Frames handed to sessions since the last pass ended, added to the metrics once per pass
    /// (no atomic per delivery on the fan-out path).
    private var deliveredSinceFlush = 0
    private let metrics: ServerMetrics
    /// A pipe on this loop: a byte written to it continues a flush pass right after the loop's
    /// next poll of its sockets, without sleeping (set by `startWaker`; until then a timer does).
    private var waker: Channel?
    private static let wakeByte = ByteBuffer(bytes: [1])

    /// `minFlushInterval`: under load, flush passes are at least this far apart, so each client
    /// gets several messages per TLS record and write(2); a quiet server flushes at the end of
    /// the loop pass, adding no delay.
    init(eventLoop: EventLoop, minFlushInterval: TimeAmount = .zero, metrics: ServerMetrics = .disabled) {
        self.eventLoop = eventLoop
        self.metrics = metrics
        self.minFlushInterval = minFlushInterval
    }

    func add(_ onlineUser: OnlineUser) {
        eventLoop.preconditionInEventLoop()
        if let old = onlineUsers.updateValue(onlineUser, forKey: onlineUser.name) {
            members.removeAll { $0 === old }
        }
        members.append(onlineUser)
    }

    func remove(_ onlineUser: OnlineUser) {
        eventLoop.preconditionInEventLoop()
        if onlineUsers[onlineUser.name] === onlineUser {
            onlineUsers[onlineUser.name] = nil
            if let index = members.firstIndex(where: { $0 === onlineUser }) { members.swapAt(index, members.count - 1); members.removeLast() }
        }
    }

    /// Sends `frame` to every local session and closes them; completes when all are closed.
    func disconnectAll(sending frame: ByteBuffer) -> EventLoopFuture<Void> {
        eventLoop.preconditionInEventLoop()
        let closes = members.map { onlineUser in
            onlineUser.send(frame)
            onlineUser.flushIfDirty()
            return onlineUser.disconnect()
        }
        return EventLoopFuture.andAllComplete(closes, on: eventLoop)
    }

    /// Writes one already-encoded frame to every local session except `sender` and `skip`.
    func fanOut(_ frame: ByteBuffer, except sender: String, skipping skip: Set<String>, chat: Bool = false) {
        eventLoop.preconditionInEventLoop()
        let except = onlineUsers[sender]
        var sent = 0
        if skip.isEmpty {
            for onlineUser in members where onlineUser !== except && onlineUser.send(frame) { sent += 1 }
        } else {
            for onlineUser in members where onlineUser !== except && !skip.contains(onlineUser.name) && onlineUser.send(frame) {
                sent += 1
            }
        }
        if chat { deliveredSinceFlush += sent }
    }

    /// One message reached a session of this loop (a direct message; fan-out counts itself).
    func delivered() {
        deliveredSinceFlush += 1
    }

    /// One flush per dirty session per loop pass: many queued frames leave as few TLS records.
    func markDirty(_ onlineUser: OnlineUser) {
        dirty.append(onlineUser)
        guard !flushScheduled else { return }
        flushScheduled = true
        let earliest = lastFlush + minFlushInterval
        if minFlushInterval == .zero || earliest <= .now() {
            eventLoop.assumeIsolated().execute { [self] in flushPass() }
        } else {
            eventLoop.assumeIsolated().scheduleTask(deadline: earliest) { [self] in flushPass() }
        }
    }

    /// Sessions flushed per step of a pass before the loop may read again: at least 64, and at
    /// most `maxStepsPerPass` steps, so that input read between steps (which waits in memory
    /// until its pass ends) stays bounded when a pass is huge, e.g. a storm of logins each
    /// announced to thousands.
    private static let minFlushStep = 64
    private static let maxStepsPerPass = 8
    private var flushStep = minFlushStep

    /// Flushes the dirty sessions, `flushStep` at a time. Between steps the loop reads its
    /// sockets, so a message that arrives during a long pass reaches every session not yet
    /// flushed in that same pass instead of waiting for the next one: the same writes, about half
    /// the waiting under load (measured in docs/PERFORMANCE.md).
    private func flushPass() {
        if flushedInPass == flushing.count {
            // Nothing in progress and nothing dirty (a wake that found the work done already).
            guard !dirty.isEmpty else {
                flushScheduled = false
                return
            }
            // A new pass: everything dirty now. Sessions dirtied during it wait for the next.
            lastFlush = .now()
            swap(&dirty, &flushing)
            flushStep = max(Self.minFlushStep, (flushing.count + Self.maxStepsPerPass - 1) / Self.maxStepsPerPass)
        }
        let end = min(flushedInPass + flushStep, flushing.count)
        for index in flushedInPass..<end { flushing[index].flushIfDirty() }
        flushedInPass = end
        if flushedInPass < flushing.count {
            continueAfterPoll()
            return
        }
        // Pass done: let go of its sessions (a closed one must not outlive its pass), keep the room.
        metrics.flushPassSize.record(flushing.count)
        if deliveredSinceFlush > 0 {
            metrics.deliveries.increment(by: deliveredSinceFlush)
            deliveredSinceFlush = 0
        }
        flushing.removeAll(keepingCapacity: true)
        flushedInPass = 0
        if dirty.isEmpty {
            flushScheduled = false
        } else if minFlushInterval > .zero {
            eventLoop.assumeIsolated().scheduleTask(deadline: lastFlush + minFlushInterval) { [self] in flushPass() }
        } else {
            // Sessions dirtied during the pass: the next pass, also after a poll.
            continueAfterPoll()
        }
    }

    /// Runs `flushPass` once the loop has read its sockets. An `execute` would run before the
    /// poll (NIO drains its task queue first); a byte on the waker pipe makes the poll return at once.
    private func continueAfterPoll() {
        if let waker {
            waker.writeAndFlush(Self.wakeByte, promise: nil)
        } else {
            eventLoop.assumeIsolated().scheduleTask(in: .microseconds(5)) { [self] in flushPass() }
        }
    }

    /// Opens this loop's waker pipe. Until it is open (and in tests that build a hub alone)
    /// passes continue on a short timer instead.
    func startWaker() async throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw IOError(errnoCode: errno, reason: "pipe") }
        do {
            let channel = try await NIOPipeBootstrap(group: eventLoop)
                .channelInitializer { [self] channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(WakeHandler(shard: self))
                    }
                }
                .takingOwnershipOfDescriptors(input: fds[0], output: fds[1]).get()
            try await eventLoop.submit { [self] in waker = channel }.get()
        } catch {
            close(fds[0])
            close(fds[1])
            throw error
        }
    }

    /// Closes the waker pipe (at shutdown).
    func stopWaker() async {
        let channel = try? await eventLoop.submit { [self] in
            defer { waker = nil }
            return waker
        }.get()
        try? await channel?.close()
    }

    /// Called by the waker's handler after the loop read the pipe.
    fileprivate func wakerFired() {
        guard flushScheduled else { return }
        flushPass()
    }
}

/// Reads the waker pipe: each read batch continues the shard's flush pass once.
private final class WakeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let shard: LoopShard

    init(shard: LoopShard) {
        self.shard = shard
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func channelReadComplete(context: ChannelHandlerContext) {
        shard.wakerFired()
    }
}
