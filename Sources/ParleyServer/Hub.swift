import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// The one owner of the server's non-durable state: who is online, on which event loop,
/// and the block relations of online users. Everything durable lives in the store.
final class Hub: Sendable {
    /// One logged-in user as the rest of the server sees them.
    struct Entry: Sendable {
        let session: Session
        let displayName: String
        let since: Date
        /// Users this user blocks.
        var blocks: Set<String>
        /// Users who block this user (loaded at login, kept current while online).
        var blockedBy: Set<String>
    }

    private let state = NIOLockedValueBox<[String: Entry]>([:])
    private let shards: [ObjectIdentifier: LoopShard]
    private let allShards: [LoopShard]

    init(eventLoops: [EventLoop], minFlushInterval: TimeAmount = .zero) {
        let shards = eventLoops.map { LoopShard(eventLoop: $0, minFlushInterval: minFlushInterval) }
        self.allShards = shards
        self.shards = Dictionary(uniqueKeysWithValues: shards.map { (ObjectIdentifier($0.eventLoop), $0) })
    }

    /// The shard of the given loop (every loop of the server's group has one).
    func shard(for loop: EventLoop) -> LoopShard {
        shards[ObjectIdentifier(loop)]!
    }

    // MARK: presence

    /// Marks a user online; false when the name is online already (second login refused).
    func register(_ session: Session, blocks: Set<String>, blockedBy: Set<String>) -> Bool {
        let added = state.withLockedValue { online -> Bool in
            guard online[session.name] == nil else { return false }
            online[session.name] = Entry(
                session: session, displayName: session.displayName, since: Date(), blocks: blocks, blockedBy: blockedBy)
            return true
        }
        if added { shard(for: session.eventLoop).add(session) }
        return added
    }

    /// Marks a user offline, returning the entry it had.
    @discardableResult
    func unregister(_ session: Session) -> Entry? {
        shard(for: session.eventLoop).remove(session)
        return state.withLockedValue { online -> Entry? in
            guard let entry = online[session.name], entry.session === session else { return nil }
            online[session.name] = nil
            return entry
        }
    }

    func entry(_ name: String) -> Entry? {
        state.withLockedValue { $0[name] }
    }

    /// Display names of online users `viewer` may see: not `viewer`, not those who block `viewer`.
    func onlineNames(visibleTo viewer: String) -> [String] {
        state.withLockedValue { online in
            let hidden = online[viewer]?.blockedBy ?? []
            return online.values.lazy
                .filter { $0.session.name != viewer && !hidden.contains($0.session.name) }
                .map(\.displayName)
                .sorted()
        }
    }

    /// Whether any of `names` is online (one lock, no copy of the online set).
    func isAnyOnline(_ names: Set<String>) -> Bool {
        state.withLockedValue { online in names.contains { online[$0] != nil } }
    }

    /// Canonical names of everyone online.
    func onlineCanonicalNames() -> Set<String> {
        state.withLockedValue { Set($0.keys) }
    }

    // MARK: blocks

    /// Who blocks `name`, as known while `name` is online.
    func blockers(of name: String) -> Set<String> {
        state.withLockedValue { $0[name]?.blockedBy ?? [] }
    }

    /// Whom `name` blocks, as known while `name` is online.
    func blocked(by name: String) -> Set<String> {
        state.withLockedValue { $0[name]?.blocks ?? [] }
    }

    /// Records a block made durable by the store in the online view of both users.
    func noteBlock(blocker: String, blocked: String, active: Bool) {
        state.withLockedValue { online in
            if active {
                online[blocker]?.blocks.insert(blocked)
                online[blocked]?.blockedBy.insert(blocker)
            } else {
                online[blocker]?.blocks.remove(blocked)
                online[blocked]?.blockedBy.remove(blocker)
            }
        }
    }

    // MARK: fan-out

    /// Sends one encoded frame to every online user except `sender` and `skipping`, one hop per
    /// event loop (not per recipient).
    func fanOut(_ frame: ByteBuffer, except sender: String, skipping: Set<String>) {
        for shard in allShards {
            if shard.eventLoop.inEventLoop {
                shard.fanOut(frame, except: sender, skipping: skipping)
            } else {
                shard.eventLoop.execute { shard.fanOut(frame, except: sender, skipping: skipping) }
            }
        }
    }

    /// Delivers to one online user; `onMiss` runs (on the recipient's loop) if they left meanwhile.
    /// Returns false when the user is not online at all.
    func deliver(_ frame: ByteBuffer, to name: String, onMiss: @escaping @Sendable () -> Void) -> Bool {
        guard let session = state.withLockedValue({ $0[name]?.session }) else { return false }
        if session.eventLoop.inEventLoop {
            if !session.send(frame) { onMiss() }
        } else {
            session.eventLoop.execute { if !session.send(frame) { onMiss() } }
        }
        return true
    }

    /// Opens each loop's flush waker (see `LoopShard.startWaker`).
    func startWakers() async throws {
        for shard in allShards { try await shard.startWaker() }
    }

    func stopWakers() async {
        for shard in allShards { await shard.stopWaker() }
    }

    /// Every online session (server shutdown).
    func allSessions() -> [Session] {
        state.withLockedValue { $0.values.map(\.session) }
    }
}
