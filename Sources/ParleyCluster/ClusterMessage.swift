import ParleyProtocol

/// A node's identity in the cluster: 32 lowercase hex digits, fresh at every start.
public struct NodeID: Hashable, Sendable, CustomStringConvertible {
    public let hex: String

    /// Nil unless `hex` is exactly 32 lowercase hex digits (it ends up in a channel name).
    public init?(_ hex: String) {
        guard hex.utf8.count == 32, hex.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { return nil }
        self.hex = hex
    }

    public var description: String { hex }
}

/// The other side of a private-link introduction relayed between nodes: what one user's node tells
/// the other user's node so that it updates its own user's entry and tells its client.
public enum PrivateRelay: Equatable, Sendable {
    /// `from` asks `to` (who is on the receiving node) for a private link.
    case request(from: String, displayName: String, fingerprint: String, token: Int64)
    /// `by` accepted; the requester connects to `host:port` and expects `fingerprint` and `linkID`.
    case accepted(by: String, displayName: String, host: String, port: Int, fingerprint: String, linkID: String)
    /// `by` declined (or did not answer).
    case declined(by: String, displayName: String)
    /// `by` ended the request or link (stopprivate, block, logout, timeout); `reason` is shown.
    case stopped(by: String, displayName: String, reason: String)
    /// `by`'s node filed request `token` and asked its user (the requester now hears ok).
    case filed(by: String, displayName: String, token: Int64)
    /// `by`'s node refused request `token`: the requester's reply is this error, as on one node.
    case refused(by: String, displayName: String, token: Int64, code: ErrorCode, message: String)
}

/// What one node tells the others (the payload of one NOTIFY). Names are canonical; display names
/// are what clients see.
public enum ClusterMessage: Equatable, Sendable {
    /// `user` logged in on the sending node; `blocks` (whom they block) do not see it.
    case online(user: String, displayName: String, blocks: [String])
    /// `user` logged out of the sending node.
    case offline(user: String, displayName: String, blocks: [String])
    /// A broadcast by `from`, skipping those who block the sender.
    case broadcast(from: String, displayName: String, text: String, skipping: [String])
    /// A direct message already stored as `delivery` for `to` (online on the receiving node).
    case direct(delivery: Int64, to: String, fromDisplayName: String, text: String, sentAtMillis: Int64)
    /// `blocker` started (`active`) or stopped blocking `blocked`.
    case block(blocker: String, blocked: String, active: Bool)
    /// A private-link step for `to`, who is online on the receiving node.
    case privateLink(to: String, PrivateRelay)
    /// A node's lease ran out and its users were removed (sent by whoever removed them).
    case nodeGone(NodeID)
    /// The real payload was too large for a notification: it is row `id` of the payload table.
    case reference(Int64)
}

/// One notification: who sent it and what it says.
public struct ClusterEnvelope: Equatable, Sendable {
    public let origin: NodeID
    public let message: ClusterMessage

    public init(origin: NodeID, message: ClusterMessage) {
        self.origin = origin
        self.message = message
    }
}

/// Why a payload was refused; the node logs it and drops the notification.
public struct ClusterCodecError: Error, Equatable, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "cluster payload refused: \(reason)" }
}
