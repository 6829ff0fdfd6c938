import NIOConcurrencyHelpers
import NIOCore
import ParleyCluster

/// The one owner of the server's non-durable state: who is online, on which event loop, the block
/// relations of online users and their private-session requests and pairs. Everything durable
/// lives in the store. One lock, held only for dictionary operations: nothing is sorted, encoded
/// or sent under it.
final class Hub: Sendable {
    /// One logged-in user as the rest of the server sees them.
    struct Entry: Sendable {
        let onlineUser: OnlineUser
        let displayName: String
        /// Users this user blocks.
        var blocks: Set<String>
        /// Users who block this user (loaded at login, kept current while online).
        var blockedBy: Set<String>
        /// Private-session requests (made or received) and pairs, by the other user's name; the
        /// other user's entry holds the mirror image, so logging out clears both in one step.
        var privateLinks: [String: PrivatePair.Link] = [:]

        var pendingPrivateRequests: Int { privateLinks.values.count(where: \.isPending) }
    }

    struct State {
        var online: [String: Entry] = [:]
        /// Users online on other nodes (empty on a single node); see `Hub+Cluster.swift`.
        var remote = RemoteDirectory()
        var nextPrivateToken: UInt64 = 1
    }

    /// Internal only so that the cluster extension (another file) can share the one lock.
    let state = NIOLockedValueBox(State())
    private let shards: [ObjectIdentifier: LoopShard]
    private let allShards: [LoopShard]

    init(eventLoops: [EventLoop], minFlushInterval: TimeAmount = .zero, metrics: ServerMetrics = .disabled) {
        let shards = eventLoops.map { LoopShard(eventLoop: $0, minFlushInterval: minFlushInterval, metrics: metrics) }
        self.allShards = shards
        self.shards = Dictionary(uniqueKeysWithValues: shards.map { (ObjectIdentifier($0.eventLoop), $0) })
    }

    /// The shard of the given loop (every loop of the server's group has one).
    func shard(for loop: EventLoop) -> LoopShard {
        shards[ObjectIdentifier(loop)]!
    }

    // MARK: presence

    /// Marks a user online; false when the name is online already (second login refused).
    func register(_ onlineUser: OnlineUser, blocks: Set<String>, blockedBy: Set<String>) -> Bool {
        let added = state.withLockedValue { s -> Bool in
            guard s.online[onlineUser.name] == nil else { return false }
            // The cluster-wide claim succeeded, so a remote entry still here is stale.
            s.remote[onlineUser.name] = nil
            s.online[onlineUser.name] = Entry(
                onlineUser: onlineUser, displayName: onlineUser.displayName, blocks: blocks, blockedBy: blockedBy)
            return true
        }
        if added { shard(for: onlineUser.eventLoop).add(onlineUser) }
        return added
    }

    /// Marks a user offline and ends their private requests and pairs on the other side too, in
    /// one step; returns the entry it had (its `privateLinks` name the peers to tell).
    @discardableResult
    func unregister(_ onlineUser: OnlineUser) -> Entry? {
        shard(for: onlineUser.eventLoop).remove(onlineUser)
        return state.withLockedValue { s -> Entry? in
            guard s.online[onlineUser.name]?.onlineUser === onlineUser,
                let entry = s.online.removeValue(forKey: onlineUser.name)
            else { return nil }
            for peer in entry.privateLinks.keys { s.online[peer]?.privateLinks[onlineUser.name] = nil }
            return entry
        }
    }

    /// Display names of online users `viewer` may see: not `viewer`, not those who block
    /// `viewer`. Sorted after the lock is released.
    func onlineNames(visibleTo viewer: String) -> [String] {
        let names = state.withLockedValue { s -> [String] in
            let hidden = s.online[viewer]?.blockedBy ?? []
            var names: [String] = []
            names.reserveCapacity(s.online.count)
            for (name, entry) in s.online where name != viewer && !hidden.contains(name) {
                names.append(entry.displayName)
            }
            for (name, user) in s.remote.users where name != viewer && !hidden.contains(name) {
                names.append(user.displayName)
            }
            return names
        }
        return names.sorted()
    }

    /// The session of `name`, if online.
    func onlineUser(named name: String) -> OnlineUser? {
        state.withLockedValue { $0.online[name]?.onlineUser }
    }

    /// Every online session (the operator's `who`; read off the lock on each session's loop).
    func allOnlineUsers() -> [OnlineUser] {
        state.withLockedValue { s in s.online.values.map(\.onlineUser) }
    }

    /// Whether any of `names` is online (one lock, no copy of the online set).
    func isAnyOnline(_ names: Set<String>) -> Bool {
        state.withLockedValue { s in names.contains { s.online[$0] != nil || s.remote[$0] != nil } }
    }

    /// Those of `names` that are not online now.
    func offline(among names: Set<String>) -> [String] {
        state.withLockedValue { s in names.filter { s.online[$0] == nil && s.remote[$0] == nil } }
    }

    // MARK: blocks

    /// Who blocks `name`, as known while `name` is online.
    func blockers(of name: String) -> Set<String> {
        state.withLockedValue { $0.online[name]?.blockedBy ?? [] }
    }

    /// Records a block made durable by the store in the online view of both users.
    func noteBlock(blocker: String, blocked: String, active: Bool) {
        state.withLockedValue { s in
            if active {
                s.online[blocker]?.blocks.insert(blocked)
                s.online[blocked]?.blockedBy.insert(blocker)
            } else {
                s.online[blocker]?.blocks.remove(blocked)
                s.online[blocked]?.blockedBy.remove(blocker)
            }
        }
    }

    // MARK: fan-out

    /// Sends one encoded frame to every online user except `sender` and `skipping`, one hop per
    /// event loop (not per recipient). `chat`: a broadcast, counted in the delivery metrics
    /// (presence notices are not).
    func fanOut(_ frame: ByteBuffer, except sender: String, skipping: Set<String>, chat: Bool = false) {
        for shard in allShards {
            if shard.eventLoop.inEventLoop {
                shard.fanOut(frame, except: sender, skipping: skipping, chat: chat)
            } else {
                shard.eventLoop.execute { shard.fanOut(frame, except: sender, skipping: skipping, chat: chat) }
            }
        }
    }

    /// Delivers to one online user; `onMiss` runs (on the recipient's loop) if they left meanwhile.
    /// Returns false when the user is not online at all.
    func deliver(_ frame: ByteBuffer, to name: String, onMiss: @escaping @Sendable () -> Void) -> Bool {
        guard let onlineUser = state.withLockedValue({ $0.online[name]?.onlineUser }) else { return false }
        if onlineUser.eventLoop.inEventLoop {
            if onlineUser.send(frame) { onlineUser.delivered() } else { onMiss() }
        } else {
            onlineUser.eventLoop.execute { if onlineUser.send(frame) { onlineUser.delivered() } else { onMiss() } }
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

    /// Sends `frame` to every online session and closes it (server shutdown). Each shard does its
    /// own sessions on its loop, so the hub's lock is not held while a list of them is built.
    func disconnectAll(sending frame: ByteBuffer) -> EventLoopFuture<Void> {
        let done = allShards.map { shard in shard.eventLoop.flatSubmit { shard.disconnectAll(sending: frame) } }
        return EventLoopFuture.andAllComplete(done, on: allShards[0].eventLoop)
    }

    // MARK: private sessions

    /// Files `requester`'s request to `target` unless the target is offline, either blocks the
    /// other, the two already have a request or pair, or either has `limit` requests waiting
    /// (each waits up to the answer timeout, so without a cap one user could flood another).
    func requestPrivate(from requester: String, to target: String, fingerprint: String, limit: Int) -> PrivatePair.Filing {
        state.withLockedValue { s in
            let (me, peer): (PrivatePair.Party, PrivatePair.Party)
            switch Self.checkPrivateRequest(s, from: requester, to: target, limit: limit) {
            case .refused(let filing): return filing
            case .allowed(let requesterParty, let targetParty): (me, peer) = (requesterParty, targetParty)
            }
            let request = PrivatePair.Request(requester: me, target: peer, fingerprint: fingerprint, token: s.nextPrivateToken)
            s.nextPrivateToken += 1
            s.online[requester]?.privateLinks[target] = .pending(request)
            // A target on another node: that node files its side when the relay reaches it.
            if let node = s.remote[target]?.node { return .filedRemote(request, node) }
            s.online[target]?.privateLinks[requester] = .pending(request)
            return .filed(request)
        }
    }

    private enum PrivateCheck {
        case refused(PrivatePair.Filing)
        case allowed(PrivatePair.Party, PrivatePair.Party)
    }

    /// The request's parties, or why it is refused. A function of its own so that the entries it
    /// reads are released before the caller changes them (no copy-on-write under the lock). A
    /// target on another node has its own limit checked there.
    private static func checkPrivateRequest(
        _ s: State, from requester: String, to target: String, limit: Int
    ) -> PrivateCheck {
        guard let me = s.online[requester] else { return .refused(.targetOffline) }
        let peer: PrivatePair.Party
        var targetPending = 0
        if let them = s.online[target] {
            peer = PrivatePair.Party(name: target, displayName: them.displayName)
            targetPending = them.pendingPrivateRequests
        } else if let remote = s.remote[target] {
            peer = PrivatePair.Party(name: target, displayName: remote.displayName)
        } else {
            return .refused(.targetOffline)
        }
        if me.blockedBy.contains(target) { return .refused(.blockedByTarget(peer)) }
        if me.blocks.contains(target) { return .refused(.blockingTarget(peer)) }
        if me.privateLinks[target] != nil { return .refused(.duplicate(peer)) }
        if me.pendingPrivateRequests >= limit { return .refused(.tooMany(peer, requesterFull: true)) }
        if targetPending >= limit { return .refused(.tooMany(peer, requesterFull: false)) }
        return .allowed(PrivatePair.Party(name: requester, displayName: me.displayName), peer)
    }

    /// Removes and returns the request `requester` made to `target` (an answer consumes it).
    func takePrivateRequest(from requester: String, to target: String) -> PrivatePair.Request? {
        state.withLockedValue { s in
            guard case .pending(let request)? = s.online[target]?.privateLinks[requester],
                request.requester.name == requester
            else { return nil }
            s.online[target]?.privateLinks[requester] = nil
            s.online[requester]?.privateLinks[target] = nil
            return request
        }
    }

    /// Records the pair of an accepted request; false if either user left meanwhile.
    func pairPrivate(_ request: PrivatePair.Request) -> Bool {
        let (a, b) = (request.requester, request.target)
        return state.withLockedValue { s in
            // Either may be on another node (its own node keeps its side); both must be online.
            guard s.online[a.name] != nil || s.remote[a.name] != nil, s.online[b.name] != nil || s.remote[b.name] != nil
            else { return false }
            s.online[a.name]?.privateLinks[b.name] = .paired(b)
            s.online[b.name]?.privateLinks[a.name] = .paired(a)
            return true
        }
    }

    /// Drops the request if it is still the one with its token (no answer in time); true if it was.
    func expirePrivate(_ request: PrivatePair.Request) -> Bool {
        let (a, b) = (request.requester.name, request.target.name)
        return state.withLockedValue { s in
            guard case .pending(let current)? = s.online[a]?.privateLinks[b], current.token == request.token else { return false }
            s.online[a]?.privateLinks[b] = nil
            s.online[b]?.privateLinks[a] = nil
            return true
        }
    }

    /// Ends the pair or request between the two users (stopprivate, block): the other party, or
    /// nil if there was none.
    func stopPrivate(_ user: String, _ other: String) -> PrivatePair.Party? {
        state.withLockedValue { s in
            guard let link = s.online[user]?.privateLinks.removeValue(forKey: other) else { return nil }
            s.online[other]?.privateLinks[user] = nil
            return link.peer(of: user)
        }
    }
}
