import NIOCore
import ParleyCluster

/// Users online on other nodes, with how many each node has: a broadcast asks where to go under
/// the hub's lock, so the answer must not cost a scan of the directory.
struct RemoteDirectory {
    private(set) var users: [String: RemoteUser]
    private(set) var perNode: [NodeID: Int] = [:]

    init(_ users: [String: RemoteUser] = [:]) {
        self.users = users
        for user in users.values { perNode[user.node, default: 0] += 1 }
    }

    subscript(name: String) -> RemoteUser? {
        get { users[name] }
        set {
            if let old = users[name] {
                perNode[old.node, default: 1] -= 1
                if perNode[old.node] == 0 { perNode[old.node] = nil }
            }
            users[name] = newValue
            if let new = newValue { perNode[new.node, default: 0] += 1 }
        }
    }

    var values: Dictionary<String, RemoteUser>.Values { users.values }
}

/// Where a broadcast has to go besides this node's own users.
enum BroadcastRoute: Equatable {
    /// Nobody is online elsewhere: no notification at all.
    case nowhere
    /// Everyone online elsewhere is on this one node: its own channel (this node does not hear it back).
    case node(NodeID)
    /// Users on several nodes: the cluster channel, one notification for all.
    case everyone
}

/// The hub's view of users online on other nodes (the remote directory), under the same lock as
/// the local entries so that "who is online" is one consistent answer. A remote user has no
/// `Entry`: their blocks and private links are kept by their own node.
extension Hub {
    /// Where a user is online.
    enum Location {
        case local(OnlineUser)
        case remote(NodeID)
        case offline
    }

    /// Where a broadcast goes: to whoever is online as this node sees it, the view `whoelse` answers
    /// from (a login elsewhere that this node has not heard of yet is not reached).
    func broadcastRoute() -> BroadcastRoute {
        state.withLockedValue { s in
            switch s.remote.perNode.count {
            case 0: .nowhere
            case 1: .node(s.remote.perNode.keys.first!)
            default: .everyone
            }
        }
    }

    func location(of name: String) -> Location {
        state.withLockedValue { s in
            if let entry = s.online[name] { return .local(entry.onlineUser) }
            if let remote = s.remote[name] { return .remote(remote.node) }
            return .offline
        }
    }

    /// Records a login on another node; false when nothing changed (already known there, or a
    /// local user of that name, which the cluster's claim makes impossible except when stale).
    func addRemote(_ user: RemoteUser) -> Bool {
        state.withLockedValue { s in
            guard s.online[user.name] == nil, s.remote[user.name] != user else { return false }
            let known = s.remote[user.name] != nil
            s.remote[user.name] = user
            return !known
        }
    }

    /// Records a logout on `node`; the user as known, or nil when they were not online there.
    func removeRemote(_ name: String, on node: NodeID) -> RemoteUser? {
        state.withLockedValue { s in
            guard let user = s.remote[name], user.node == node else { return nil }
            s.remote[name] = nil
            return user
        }
    }

    /// A local user's private request or pair with a remote user who vanished without a word.
    struct OrphanedLink {
        let local: String
        let peer: PrivatePair.Party
    }

    /// Removes every user of a node that died; also ends local users' private links with them (the
    /// dead node cannot say so). Scans the local entries: a node's death is rare.
    func removeRemotes(on node: NodeID) -> (users: [RemoteUser], links: [OrphanedLink]) {
        state.withLockedValue { s in
            let gone = s.remote.values.filter { $0.node == node }
            for user in gone { s.remote[user.name] = nil }
            return (gone, Self.orphanLinks(&s, of: Set(gone.map(\.name))))
        }
    }

    /// Replaces the directory with a snapshot read from the database (after (re)listening):
    /// returns who appeared and who vanished, to tell the local users.
    func replaceRemotes(with snapshot: [RemoteUser], myself: NodeID)
        -> (added: [RemoteUser], removed: [RemoteUser], links: [OrphanedLink])
    {
        state.withLockedValue { s in
            var fresh: [String: RemoteUser] = [:]
            for user in snapshot where user.node != myself && s.online[user.name] == nil { fresh[user.name] = user }
            let added = fresh.values.filter { s.remote[$0.name] == nil }
            let removed = s.remote.values.filter { fresh[$0.name] == nil }
            s.remote = RemoteDirectory(fresh)
            return (added, removed, Self.orphanLinks(&s, of: Set(removed.map(\.name))))
        }
    }

    private static func orphanLinks(_ s: inout State, of names: Set<String>) -> [OrphanedLink] {
        guard !names.isEmpty else { return [] }
        var links: [OrphanedLink] = []
        for (local, entry) in s.online {
            for (other, link) in entry.privateLinks where names.contains(other) {
                links.append(OrphanedLink(local: local, peer: link.peer(of: local)))
            }
        }
        for link in links { s.online[link.local]?.privateLinks[link.peer.name] = nil }
        return links
    }

    /// Local users whom `name` blocks (they do not see `name`'s presence), for a remote user whose
    /// own block list this node does not hold.
    func localUsersBlocked(by name: String) -> Set<String> {
        state.withLockedValue { s in
            var names: Set<String> = []
            for (local, entry) in s.online where entry.blockedBy.contains(name) { names.insert(local) }
            return names
        }
    }

    /// Every local user (for a lost lease or a re-listen, which concern them all).
    func localUsers() -> [OnlineUser] {
        state.withLockedValue { s in s.online.values.map(\.onlineUser) }
    }

    // MARK: private links with a remote side

    /// Files, on the target's side, a request made on the requester's node (which checked its
    /// side): `.filed`, or the refusal the requester's reply carries.
    func fileRemoteRequest(from requester: PrivatePair.Party, to target: String, fingerprint: String, token: Int64,
                           limit: Int) -> PrivatePair.Filing {
        state.withLockedValue { s in
            guard let them = s.online[target] else { return .targetOffline }
            let peer = PrivatePair.Party(name: target, displayName: them.displayName)
            if them.blocks.contains(requester.name) { return .blockedByTarget(peer) }
            if them.blockedBy.contains(requester.name) { return .blockingTarget(peer) }
            if them.privateLinks[requester.name] != nil { return .duplicate(peer) }
            if them.pendingPrivateRequests >= limit { return .tooMany(peer, requesterFull: false) }
            let request = PrivatePair.Request(
                requester: requester, target: peer, fingerprint: fingerprint, token: UInt64(clamping: token))
            s.online[target]?.privateLinks[requester.name] = .pending(request)
            return .filed(request)
        }
    }

    /// The remote target accepted: the local requester's pending request becomes a pair. False when
    /// it is no longer pending (expired, stopped, or the requester left).
    func remoteAccepted(requester: String, by accepter: PrivatePair.Party) -> Bool {
        state.withLockedValue { s in
            guard case .pending(let request)? = s.online[requester]?.privateLinks[accepter.name],
                request.requester.name == requester
            else { return false }
            s.online[requester]?.privateLinks[accepter.name] = .paired(accepter)
            return true
        }
    }

    /// The remote target declined: drops the local requester's pending request (only request
    /// `token` when given: a newer one stays); false if none.
    func remoteDeclined(requester: String, by target: String, token: UInt64? = nil) -> Bool {
        state.withLockedValue { s in
            guard case .pending(let request)? = s.online[requester]?.privateLinks[target],
                request.requester.name == requester, token == nil || request.token == token
            else { return false }
            s.online[requester]?.privateLinks[target] = nil
            return true
        }
    }
}
