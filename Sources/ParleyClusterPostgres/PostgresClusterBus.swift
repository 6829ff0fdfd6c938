import AsyncAlgorithms
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ParleyCluster
import PostgresNIO

/// The cluster over PostgreSQL: one connection that LISTENs (the cluster channel and this node's
/// own), one that runs this node's statements in the order they were asked for (claims, releases,
/// notifications, stored messages, the lease), and the membership machine deciding when to
/// connect, join, renew or give the users up. Nothing here runs per delivery: a broadcast is one
/// notification, fanned out by each node to its own users.
public final class PostgresClusterBus: ClusterBus, Sendable {
    /// What the bus needs to reach the database and how long a lease lasts.
    public struct Settings: Sendable {
        public var connection: PostgresConnection.Configuration
        public var nodeName: String
        public var lease: Duration
        public var eventLoop: any EventLoop

        public init(connection: PostgresConnection.Configuration, nodeName: String, lease: Duration, eventLoop: any EventLoop) {
            self.connection = connection
            self.nodeName = nodeName
            self.lease = lease
            self.eventLoop = eventLoop
        }
    }

    public let node: NodeID
    public var isClustered: Bool { true }
    public let events: AsyncStream<ClusterEvent>
    let eventsOut: AsyncStream<ClusterEvent>.Continuation
    let settings: Settings
    let logger: Logger
    let jobs: AsyncStream<Job>.Continuation
    let jobStream: AsyncStream<Job>
    let inbound: AsyncStream<Inbound>.Continuation
    let inboundStream: AsyncStream<Inbound>
    let state: NIOLockedValueBox<State>
    /// The job runner (ends after `leave`) and the tasks cancelled at shutdown (ticks, inbound).
    private let runner = NIOLockedValueBox<Task<Void, Never>?>(nil)
    private let tasks = NIOLockedValueBox<[Task<Void, Never>]>([])

    struct State {
        var membership: Membership<SystemMembershipClock>
        /// The connections of the current generation; both nil while down.
        var control: PostgresConnection?
        var listener: PostgresConnection?
        /// Bumped at every connect, so that a stale failure cannot tear down newer connections.
        var generation = 0
        /// Names this node claimed and has not released: kept at a rejoin, the rest handed back.
        var held: Set<String> = []
        var stopping = false
        /// The task reading the current listener's notifications.
        var listening: Task<Void, Never>?
        /// Notifications not yet sent, oldest first: while the database is unreachable they wait
        /// here (bounded) and go out in order once it is back, instead of being lost.
        var unsent: [Unsent] = []
        /// Held notifications dropped (too many, or too old) since the last report in the log.
        var droppedUnsent = 0
        /// About how many bytes the held notifications take (their texts and names).
        var unsentBytes = 0
        /// Set at a rejoin with notifications held: they wait until then, so that the other
        /// nodes, reconnecting too, listen again first (a notification nobody listens for is lost).
        var heldUntil: ContinuousClock.Instant?

        /// Holds one more notification, dropping the oldest beyond the count, the bytes or the age.
        mutating func hold(_ item: Unsent) {
            unsent.append(item)
            unsentBytes += item.bytes
            dropExpired()
            while unsent.count > PostgresClusterBus.unsentLimit || unsentBytes > PostgresClusterBus.unsentByteLimit {
                removeFirstUnsent()
                droppedUnsent += 1
            }
        }

        mutating func dropExpired() {
            let oldest = ContinuousClock.now - PostgresClusterBus.unsentMaxAge
            while let first = unsent.first, first.queuedAt < oldest {
                removeFirstUnsent()
                droppedUnsent += 1
            }
        }

        mutating func removeFirstUnsent() {
            unsentBytes -= unsent.removeFirst().bytes
        }
    }

    /// A notification waiting for the database.
    struct Unsent {
        let message: ClusterMessage
        let channel: String
        let queuedAt: ContinuousClock.Instant

        /// A cheap upper estimate of its payload: texts and name lists dominate.
        var bytes: Int {
            switch message {
            case .broadcast(let from, let display, let text, let skipping):
                256 + from.utf8.count + display.utf8.count + text.utf8.count + skipping.reduce(0) { $0 + $1.utf8.count + 3 }
            case .privateLink(_, .stopped(_, _, let reason)), .privateLink(_, .refused(_, _, _, _, let reason)):
                256 + reason.utf8.count
            default:
                256
            }
        }
    }

    /// At most this many notifications, and about this many bytes, wait for the database; beyond
    /// either the oldest go.
    static let unsentLimit = 10_000
    static let unsentByteLimit = 16 << 20
    /// A held notification older than this is dropped: a broadcast minutes late misleads more than it helps.
    static let unsentMaxAge: Duration = .seconds(120)
    /// How long held notifications wait after a rejoin: longer than the other nodes' longest
    /// early-reconnect delay (1 s), so that they are listening again when these go out.
    static let heldFlushDelay: Duration = .milliseconds(1500)

    enum Job: Sendable {
        case claim(user: String, displayName: String, blocks: [String], CheckedContinuation<ClaimOutcome, Never>)
        case release(user: String, displayName: String, blocks: [String])
        case publish(ClusterMessage, channel: String)
        case direct(to: String, node: NodeID, sender: String, text: String, sentAt: Int64,
                    CheckedContinuation<Result<Void, DirectFailure>, Never>)
        case join(generation: Int)
        case renew
        case catchUp(generation: Int)
        case resolve(Int64, CheckedContinuation<String?, Never>)
        case leave(CheckedContinuation<Void, Never>)
        /// The wait after a rejoin is over: the notifications held through the outage may go.
        case flushHeld
    }

    enum Inbound: Sendable {
        case listening(generation: Int)
        case payload(String)
        case caughtUp(generation: Int, [RemoteUser])
    }

    public init(settings: Settings, logger: Logger) {
        self.node = NodeID(Self.randomHex())!
        self.settings = settings
        var logger = logger
        logger[metadataKey: "node"] = "\(settings.nodeName)"
        self.logger = logger
        (events, eventsOut) = AsyncStream.makeStream()
        (jobStream, jobs) = AsyncStream.makeStream()
        (inboundStream, inbound) = AsyncStream.makeStream()
        state = NIOLockedValueBox(State(membership: Membership(clock: SystemMembershipClock(), lease: settings.lease)))
    }

    private static func randomHex() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    // MARK: ClusterBus

    public func start() async {
        let control = Task { await self.runJobs() }
        let receiving = Task { await self.runInbound() }
        let interval = state.withLockedValue { $0.membership.renewalInterval }
        let ticking = Task {
            for await _ in AsyncTimerSequence(interval: interval, clock: ContinuousClock()) {
                if Task.isCancelled { break }
                self.perform(self.state.withLockedValue { $0.membership.tick() })
            }
        }
        runner.withLockedValue { $0 = control }
        tasks.withLockedValue { $0 = [receiving, ticking] }
        // The first attempt is awaited, so a node that can reach its database starts as a member.
        let actions = state.withLockedValue { $0.membership.start() }
        if actions.contains(.connect) { await connect() }
    }

    public func claim(user: String, displayName: String, blocks: [String]) async -> ClaimOutcome {
        await withCheckedContinuation { jobs.yield(.claim(user: user, displayName: displayName, blocks: blocks, $0)) }
    }

    public func release(user: String, displayName: String, blocks: [String]) {
        jobs.yield(.release(user: user, displayName: displayName, blocks: blocks))
    }

    public func publish(_ message: ClusterMessage) {
        jobs.yield(.publish(message, channel: ClusterSQL.clusterChannel))
    }

    public func send(_ message: ClusterMessage, to node: NodeID) {
        jobs.yield(.publish(message, channel: ClusterSQL.channel(of: node)))
    }

    public func storeDirect(to recipient: String, on node: NodeID, from sender: String, senderDisplayName: String,
                            text: String, sentAtMillis: Int64) async throws(DirectFailure) {
        let result = await withCheckedContinuation {
            jobs.yield(.direct(to: recipient, node: node, sender: senderDisplayName, text: text, sentAt: sentAtMillis, $0))
        }
        try result.get()
    }

    public func shutdown() async {
        state.withLockedValue { $0.stopping = true }
        let others = tasks.withLockedValue { $0 }
        for task in others { task.cancel() }
        // Queued releases and notifications go out first; then the node's row and claims go.
        await withCheckedContinuation { jobs.yield(.leave($0)) }
        jobs.finish()
        await runner.withLockedValue({ $0 })?.value
        inbound.finish()
        eventsOut.finish()
        let (control, listener, listening) = state.withLockedValue { s in
            defer { (s.control, s.listener, s.listening) = (nil, nil, nil) }
            return (s.control, s.listener, s.listening)
        }
        try? await control?.close()
        try? await listener?.close()
        await listening?.value
        for task in others { await task.value }
    }

    // MARK: membership actions

    func perform(_ actions: [Membership<SystemMembershipClock>.Action]) {
        for action in actions {
            switch action {
            case .connect:
                Task { await self.connect() }
            case .join:
                jobs.yield(.join(generation: state.withLockedValue { $0.generation }))
            case .renew:
                jobs.yield(.renew)
            case .dropLocalUsers:
                logger.warning("cluster lease not renewed in time: logging this node's users out")
                eventsOut.yield(.dropLocalUsers)
            }
        }
    }

    private func connect() async {
        let label = settings.nodeName
        do {
            let control = try await PostgresConnection.connect(
                on: settings.eventLoop, configuration: settings.connection, id: 1, logger: logger)
            let listener: PostgresConnection
            do {
                listener = try await PostgresConnection.connect(
                    on: settings.eventLoop, configuration: settings.connection, id: 2, logger: logger)
            } catch {
                try? await control.close()
                throw error
            }
            let (generation, actions) = state.withLockedValue { s -> (Int, [Membership<SystemMembershipClock>.Action]) in
                s.generation += 1
                (s.control, s.listener) = (control, listener)
                return (s.generation, s.stopping ? [] : s.membership.connected())
            }
            logger.info("cluster database connected", metadata: ["node": "\(label)"])
            startListening(listener, generation: generation)
            perform(actions)
        } catch {
            logger.warning("cluster database unreachable: \(String(reflecting: error))")
            perform(state.withLockedValue { $0.membership.connectFailed() })
            scheduleRetry()
        }
    }

    /// A connection of `generation` failed: both are closed and the next tick reconnects.
    func lostConnection(generation: Int, _ error: any Error) {
        let (connections, actions) = state.withLockedValue { s -> ([PostgresConnection], [Membership<SystemMembershipClock>.Action]) in
            guard s.generation == generation, !s.stopping else { return ([], []) }
            let open = [s.control, s.listener].compactMap { $0 }
            (s.control, s.listener) = (nil, nil)
            return (open, s.membership.connectionLost())
        }
        guard !connections.isEmpty else { return }
        logger.warning("cluster database connection lost: \(String(reflecting: error))")
        // Held until closed: postgres-nio requires a connection to be closed before it is released.
        for connection in connections { connection.close().whenComplete { _ in withExtendedLifetime(connection) {} } }
        perform(actions)
        scheduleRetry()
    }

    /// A timer for an early reconnect (the periodic tick remains the fallback).
    private func scheduleRetry() {
        let delay = state.withLockedValue { s -> Duration? in s.stopping ? nil : s.membership.nextRetryDelay() }
        guard let delay else { return }
        settings.eventLoop.scheduleTask(in: .nanoseconds(Int64(delay.components.seconds) * 1_000_000_000
                                                          + delay.components.attoseconds / 1_000_000_000)) {
            self.perform(self.state.withLockedValue { s in s.stopping ? [] : s.membership.retry() })
        }
    }

    private func startListening(_ connection: PostgresConnection, generation: Int) {
        let channels = (ClusterSQL.clusterChannel, ClusterSQL.channel(of: node))
        let task = Task {
            do {
                try await connection.listen(on: channels.0) { cluster in
                    try await connection.listen(on: channels.1) { own in
                        // Both channels are live: what arrives from now on waits until the
                        // directory snapshot read next has been applied.
                        self.inbound.yield(.listening(generation: generation))
                        self.jobs.yield(.catchUp(generation: generation))
                        for try await notification in merge(cluster, own) {
                            self.inbound.yield(.payload(notification.payload))
                        }
                    }
                }
                lostConnection(generation: generation, ListenEnded())
            } catch {
                lostConnection(generation: generation, error)
            }
        }
        state.withLockedValue { $0.listening = task }
    }
}

/// The notification stream ended without an error (the connection closed).
struct ListenEnded: Error {}
