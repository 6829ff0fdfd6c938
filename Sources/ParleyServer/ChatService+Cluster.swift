import Foundation
import NIOCore
import ParleyCluster
import ParleyProtocol

/// The cluster's part of the commands: a login is claimed cluster-wide before the user goes
/// online, and a message to a user on another node is stored and routed in one transaction.
extension ChatService {
    /// Authenticates, then claims the name across the cluster (one login per user everywhere).
    func logIn(username: String, password: String, peer: SocketAddress?) async -> Result<Authenticated, ProtocolError> {
        let result = await authenticate(username: username, password: password, peer: peer)
        guard case .success(let account) = result, cluster.isClustered else { return result }
        // Online here already: refused without asking the database (the hub refuses it anyway).
        if case .local = hub.location(of: account.name) { return .failure(ProtocolError(.alreadyOnline)) }
        switch await cluster.claim(user: account.name, displayName: account.displayName, blocks: account.blocks.sorted()) {
        case .claimed:
            return result
        case .taken:
            logger.info("login refused: online on another node", metadata: ["user": "\(account.name)"])
            return .failure(ProtocolError(.alreadyOnline))
        case .unavailable:
            logger.warning("login refused: the cluster database is unavailable", metadata: ["user": "\(account.name)"])
            return .failure(ProtocolError(.internal, "Error. The server cannot reach its database; please try again shortly"))
        }
    }

    /// Hands back a claim whose login did not go online (the connection closed meanwhile).
    func releaseClaim(_ account: Authenticated) {
        guard cluster.isClustered else { return }
        cluster.release(user: account.name, displayName: account.displayName, blocks: account.blocks.sorted())
    }

    /// Stores a message for a user online on `node` and tells that node, durably before the sender
    /// hears ok; the recipient's ack deletes it like any stored message.
    func storeDirect(to recipient: String, on node: NodeID, from sender: String, senderDisplayName: String, text: String)
        async -> ProtocolError?
    {
        do {
            try await cluster.storeDirect(
                to: recipient, on: node, from: sender, senderDisplayName: senderDisplayName, text: text,
                sentAtMillis: Int64(Date().timeIntervalSince1970 * 1000))
            return nil
        } catch .unknownRecipient {
            return ProtocolError(.unknownUser)
        } catch {
            logger.error("storing a message for another node failed", metadata: ["user": "\(recipient)"])
            return ProtocolError(.internal, "Error. The server cannot reach its database; the message was not sent")
        }
    }
}
