import ParleyProtocol
import ParleyCluster

/// The server's view of private sessions, kept in each online user's `Hub.Entry`: requests
/// waiting for an answer and pairs that were set up. Names, the requester's public-key
/// fingerprint until the answer, and a token per request; never a private key, never a private
/// message (those go peer to peer).
enum PrivatePair {
    /// A user as the private bookkeeping knows them: canonical name (identity) and display name.
    struct Party: Sendable, Hashable {
        let name: String
        let displayName: String
    }

    /// A `startprivate` waiting for the target's answer (held by both users' entries).
    struct Request: Sendable {
        let requester: Party
        let target: Party
        /// The requester's SPKI SHA-256 (hex), relayed to the target on accept.
        let fingerprint: String
        /// Distinguishes this request from a later one between the same users (timer expiry).
        let token: UInt64
    }

    /// One relation of an online user with another, keyed in the entry by the other's name.
    enum Link: Sendable {
        /// A request made or received, waiting for an answer.
        case pending(Request)
        /// A session was set up with `peer`.
        case paired(Party)

        var isPending: Bool {
            if case .pending = self { return true }
            return false
        }

        /// The other user of this relation, seen from `name`.
        func peer(of name: String) -> Party {
            switch self {
            case .paired(let peer): peer
            case .pending(let request): request.requester.name == name ? request.target : request.requester
            }
        }
    }

    /// What `Hub.requestPrivate` did.
    enum Filing: Sendable {
        case filed(Request)
        /// Filed on the requester's side; the target is online on `node`, which files the other side.
        case filedRemote(Request, NodeID)
        /// The target is not online (the caller tells unknown from offline).
        case targetOffline
        /// The target blocks the requester.
        case blockedByTarget(Party)
        /// The requester blocks the target.
        case blockingTarget(Party)
        /// The two users already have a request or a session (either way round).
        case duplicate(Party)
        /// The requester (`requesterFull`) or the target already has `limit` requests waiting.
        case tooMany(Party, requesterFull: Bool)
    }
}

extension PrivatePair.Filing {
    /// The other user a refusal names, when it names one.
    var peer: PrivatePair.Party? {
        switch self {
        case .blockedByTarget(let peer), .blockingTarget(let peer), .duplicate(let peer), .tooMany(let peer, _): peer
        case .filed, .filedRemote, .targetOffline: nil
        }
    }

    /// The reply's error for a refusal, the same on the requester's node and the target's; nil
    /// when filed. `targetOffline` is "offline" here: only the requester's node tells unknown users.
    func refusal(limit: Int) -> (code: ErrorCode, message: String)? {
        switch self {
        case .filed, .filedRemote:
            nil
        case .targetOffline:
            (.userOffline, ErrorCode.userOffline.defaultMessage)
        case .blockedByTarget(let peer):
            (.privateNotEnabled, "Error. Private messaging with \(peer.displayName) is not possible: \(peer.displayName) has blocked you")
        case .blockingTarget(let peer):
            (.privateNotEnabled, "Error. You have blocked \(peer.displayName); unblock them first")
        case .duplicate(let peer):
            (.privateAlreadyActive, "Error. A private session or request with \(peer.displayName) already exists")
        case .tooMany(let peer, let requesterFull):
            (.tooManyRequests, requesterFull
                ? "Error. You have \(limit) private requests waiting for an answer; wait for one to end"
                : "Error. \(peer.displayName) has too many private requests waiting; try again later")
        }
    }
}
