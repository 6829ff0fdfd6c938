import NIOConcurrencyHelpers

/// The server's whole view of private sessions: requests waiting for an answer and pairs that
/// were set up. It holds names, the requester's public-key fingerprint until the answer, and a
/// token per request; never a private key, never a private message (those go peer to peer).
///
/// Ownership: one instance, held by `ChatService`. Requests come from connection handlers on
/// different event loops, so the state sits behind one lock. Every method is a short, pure state
/// change that returns what the caller must send; nothing does I/O or calls out under the lock.
final class PrivateSessions: Sendable {
    /// A user as the private bookkeeping knows them: canonical name (identity) and display name.
    struct Party: Sendable, Hashable {
        let name: String
        let displayName: String
    }

    /// A `startprivate` waiting for the target's answer.
    struct Request: Sendable {
        let requester: Party
        let target: Party
        /// The requester's SPKI SHA-256 (hex), relayed to the target on accept.
        let fingerprint: String
        /// Distinguishes this request from a later one between the same users (timer expiry).
        let token: UInt64
    }

    /// Something that ended because a user left or a pair was stopped: who must be told.
    struct Ended: Sendable {
        /// The other user of the request or session.
        let peer: Party
        /// True for a session that was set up, false for a request still waiting.
        let wasActive: Bool
    }

    private struct PairKey: Hashable {
        let low: String
        let high: String
        init(_ a: String, _ b: String) { (low, high) = a < b ? (a, b) : (b, a) }
        func contains(_ name: String) -> Bool { low == name || high == name }
    }

    private struct State {
        var requests: [PairKey: Request] = [:]
        var active: [PairKey: (Party, Party)] = [:]
        var nextToken: UInt64 = 1
    }

    private let state = NIOLockedValueBox(State())

    /// What `request` did.
    enum Filing: Sendable {
        case filed(Request)
        /// The two users already have a request or a session (either way round).
        case duplicate
        /// This user already has `limit` requests waiting (made or received); nothing was filed.
        case tooMany(Party)
    }

    /// Records a request unless it duplicates one, or either user already has `limit` pending
    /// requests in total (made plus received): each waits up to the answer timeout, so without a
    /// cap one user could flood another with prompts or hold many fingerprints on the server.
    func request(from requester: Party, to target: Party, fingerprint: String, limit: Int) -> Filing {
        state.withLockedValue { s in
            let key = PairKey(requester.name, target.name)
            guard s.requests[key] == nil, s.active[key] == nil else { return .duplicate }
            for party in [requester, target] where s.requests.keys.count(where: { $0.contains(party.name) }) >= limit {
                return .tooMany(party)
            }
            let request = Request(requester: requester, target: target, fingerprint: fingerprint, token: s.nextToken)
            s.nextToken += 1
            s.requests[key] = request
            return .filed(request)
        }
    }

    /// Removes and returns the request `requester` made to `target` (an answer consumes it).
    func takeRequest(from requester: String, to target: String) -> Request? {
        state.withLockedValue { s in
            let key = PairKey(requester, target)
            guard let request = s.requests[key], request.requester.name == requester else { return nil }
            s.requests[key] = nil
            return request
        }
    }

    /// Drops the request if it is still the one with `token` (no answer in time); true if it was.
    func expire(_ request: Request) -> Bool {
        state.withLockedValue { s in
            let key = PairKey(request.requester.name, request.target.name)
            guard s.requests[key]?.token == request.token else { return false }
            s.requests[key] = nil
            return true
        }
    }

    /// Marks the pair as having a session.
    func activate(_ a: Party, _ b: Party) {
        state.withLockedValue { $0.active[PairKey(a.name, b.name)] = (a, b) }
    }

    /// Whether the two users have a session set up.
    func isActive(_ a: String, _ b: String) -> Bool {
        state.withLockedValue { $0.active[PairKey(a, b)] != nil }
    }

    /// Ends the session or request between the two users (stopprivate, block); nil if there was none.
    func stop(_ user: String, _ other: String) -> Ended? {
        state.withLockedValue { s in
            let key = PairKey(user, other)
            if let (a, b) = s.active.removeValue(forKey: key) {
                return Ended(peer: a.name == other ? a : b, wasActive: true)
            }
            if let request = s.requests.removeValue(forKey: key) {
                return Ended(peer: request.requester.name == other ? request.requester : request.target, wasActive: false)
            }
            return nil
        }
    }

    /// Ends everything involving `user` (they left): the peers to tell.
    func removeAll(involving user: String) -> [Ended] {
        state.withLockedValue { s in
            var ended: [Ended] = []
            for (key, pair) in s.active where key.contains(user) {
                s.active[key] = nil
                ended.append(Ended(peer: pair.0.name == user ? pair.1 : pair.0, wasActive: true))
            }
            for (key, request) in s.requests where key.contains(user) {
                s.requests[key] = nil
                ended.append(Ended(peer: request.requester.name == user ? request.target : request.requester, wasActive: false))
            }
            return ended
        }
    }
}
