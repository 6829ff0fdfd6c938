import ParleyCluster
import ParleyCrypto

/// The bus of a server alone on its database (SQLite): no other node, nothing to tell, nothing to
/// wait for. Every call returns at once, so the single-node path costs nothing.
public final class SingleNodeBus: ClusterBus {
    public let node: NodeID
    public var isClustered: Bool { false }
    public let events: AsyncStream<ClusterEvent>
    private let continuation: AsyncStream<ClusterEvent>.Continuation

    public init() {
        node = NodeID(SecureRandom.hex(bytes: 16))!
        (events, continuation) = AsyncStream.makeStream()
    }

    public func start() async {}
    public func claim(user: String, displayName: String, blocks: [String]) async -> ClaimOutcome { .claimed }
    public func release(user: String, displayName: String, blocks: [String]) {}
    public func publish(_ message: ClusterMessage) {}
    public func send(_ message: ClusterMessage, to node: NodeID) {}
    public func storeDirect(to recipient: String, on node: NodeID, from sender: String, senderDisplayName: String,
                            text: String, sentAtMillis: Int64) async throws(DirectFailure) {
        // Nobody is online elsewhere, so the server never routes a message here.
        throw .unavailable
    }
    public func shutdown() async { continuation.finish() }
}
