/// A user online on another node, as this node's directory knows them.
public struct RemoteUser: Equatable, Sendable {
    public let name: String
    public let displayName: String
    public let node: NodeID

    public init(name: String, displayName: String, node: NodeID) {
        self.name = name
        self.displayName = displayName
        self.node = node
    }
}

/// What the bus tells the server, in the order it happened.
public enum ClusterEvent: Sendable {
    /// Another node said something (never this node's own notifications).
    case message(ClusterEnvelope)
    /// Everyone online elsewhere now, read after (re)listening: the server replaces its directory
    /// with it and tells its users what changed.
    case directory([RemoteUser])
    /// This node's lease may have run out: every local user must be logged out.
    case dropLocalUsers
}

/// The outcome of claiming a name for a login, cluster-wide.
public enum ClaimOutcome: Equatable, Sendable {
    /// The name is this node's until released; the presence notification went out with the claim.
    case claimed
    /// Online on another live node (or on this one).
    case taken
    /// The database cannot be reached or this node's lease is not current: refuse the login.
    case unavailable
}

/// Why a cross-node direct message was not stored.
public enum DirectFailure: Error, Equatable, Sendable {
    /// No such account.
    case unknownRecipient
    /// The database cannot be reached: nothing was stored.
    case unavailable
}

/// How one server talks to the others sharing its database. The server calls it from its event
/// loops (`publish`, `release` return at once and keep their order) and from tasks (`claim`,
/// `storeDirect` wait for the database). A single node uses `SingleNodeBus`, which does nothing.
public protocol ClusterBus: Sendable {
    /// This node.
    var node: NodeID { get }
    /// False for the single-node bus: the server then skips all cluster bookkeeping.
    var isClustered: Bool { get }
    /// What other nodes say, and directory snapshots; one consumer (the server).
    var events: AsyncStream<ClusterEvent> { get }
    /// Joins the cluster (or keeps trying in the background); returns once the first attempt ended.
    func start() async
    /// Claims `user` for a login here and tells the others, atomically.
    func claim(user: String, displayName: String, blocks: [String]) async -> ClaimOutcome
    /// Releases a claim of this node and tells the others (logout); ordered after earlier calls.
    func release(user: String, displayName: String, blocks: [String])
    /// Tells every node (broadcast, block change); ordered after earlier calls.
    func publish(_ message: ClusterMessage)
    /// Tells one node (private-link relays); ordered after earlier calls.
    func send(_ message: ClusterMessage, to node: NodeID)
    /// Stores a message for `recipient` (online on `node`) and tells that node, in one transaction:
    /// once this returns, the message is durable and delivered (or kept for the next login).
    func storeDirect(to recipient: String, on node: NodeID, from sender: String, senderDisplayName: String,
                     text: String, sentAtMillis: Int64) async throws(DirectFailure)
    /// Leaves the cluster: releases this node's users and its node row.
    func shutdown() async
}
