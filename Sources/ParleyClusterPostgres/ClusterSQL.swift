import Foundation
import Logging
import ParleyCluster
import PostgresNIO

/// Every statement the cluster bus runs, on the tables of the PostgreSQL store's migration 2 (see
/// `PostgresSchema`; the store owns the schema so that one advisory-locked migration creates all).
/// Lease times are the database's own clock (`now()`), so nodes' clocks need not agree.
enum ClusterSQL {
    static let clusterChannel = "parley_cluster"
    static func channel(of node: NodeID) -> String { "parley_node_\(node.hex)" }

    static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Sends `envelope` on `channel` within the connection's current statement or transaction; by
    /// reference to a payload row when it is too large for a notification.
    /// The database's own refusal inside `error` (a transaction's failure included), or nil when
    /// the connection failed instead.
    static func refusal(_ error: any Error) -> PSQLError? {
        if let error = error as? PSQLError { return error.code == .server ? error : nil }
        if let error = error as? PostgresTransactionError,
            let inner = error.closureError ?? error.commitError ?? error.beginError
        {
            return refusal(inner)
        }
        return nil
    }

    /// Whether retrying the statement later cannot help: not a lost connection (08), an operator
    /// or shutdown intervention (57), a lack of resources (53) or a serialization failure (40).
    static func isPermanent(_ refusal: PSQLError) -> Bool {
        let state = refusal.serverInfo?[.sqlState] ?? ""
        return !["08", "57", "53", "40"].contains { state.hasPrefix($0) }
    }

    static func notify(_ envelope: ClusterEnvelope, on channel: String, _ c: PostgresConnection, _ logger: Logger) async throws {
        try await notify(payload: ClusterCodec.encode(envelope), origin: envelope.origin, on: channel, c, logger)
    }

    private static func notify(payload: String, origin: NodeID, on channel: String, _ c: PostgresConnection,
                               _ logger: Logger) async throws {
        if payload.utf8.count <= ClusterCodec.maxNotificationBytes {
            try await c.query("SELECT pg_notify(\(channel), \(payload))", logger: logger)
            return
        }
        let rows = try await c.query("INSERT INTO cluster_payloads (body) VALUES (\(payload)) RETURNING id", logger: logger)
        var id: Int64 = 0
        for try await row in rows.decode(Int64.self) { id = row }
        let reference = ClusterCodec.encode(ClusterEnvelope(origin: origin, message: .reference(id)))
        try await c.query("SELECT pg_notify(\(channel), \(reference))", logger: logger)
    }

    /// `notify` in a transaction of its own when the payload needs a row.
    static func publish(_ envelope: ClusterEnvelope, on channel: String, _ c: PostgresConnection, _ logger: Logger) async throws {
        let payload = ClusterCodec.encode(envelope)
        if payload.utf8.count <= ClusterCodec.maxNotificationBytes {
            try await c.query("SELECT pg_notify(\(channel), \(payload))", logger: logger)
        } else {
            try await c.withTransaction(logger: logger) {
                try await notify(payload: payload, origin: envelope.origin, on: channel, $0, logger)
            }
        }
    }

    /// Registers (or refreshes) the node with a fresh lease, hands back this node's claims that no
    /// longer have a user here, and closes login-history records nobody online holds.
    static func join(node: NodeID, name: String, lease: Duration, held: [String], _ c: PostgresConnection,
                     _ logger: Logger) async throws {
        let seconds = leaseSeconds(lease)
        try await c.withTransaction(logger: logger) { c in
            try await c.query("""
                INSERT INTO cluster_nodes (id, name, lease_until, started_at)
                VALUES (\(node.hex), \(name), now() + make_interval(secs => \(seconds)), now())
                ON CONFLICT (id) DO UPDATE SET lease_until = EXCLUDED.lease_until
                """, logger: logger)
            let stale = try await c.query("""
                DELETE FROM cluster_online WHERE node_id = \(node.hex) AND NOT (name = ANY(\(held)))
                RETURNING name, display_name
                """, logger: logger)
            var released: [(String, String)] = []
            for try await (user, display) in stale.decode((String, String).self) { released.append((user, display)) }
            for (user, display) in released {
                let envelope = ClusterEnvelope(origin: node, message: .offline(user: user, displayName: display, blocks: []))
                try await notify(envelope, on: clusterChannel, c, logger)
            }
            try await c.query("""
                UPDATE sessions SET logout_at = \(nowMillis())
                WHERE logout_at IS NULL AND name NOT IN (SELECT name FROM cluster_online)
                """, logger: logger)
        }
    }

    /// Extends the lease; false when the node row is gone (another node removed this one).
    static func renew(node: NodeID, lease: Duration, _ c: PostgresConnection, _ logger: Logger) async throws -> Bool {
        let rows = try await c.query("""
            UPDATE cluster_nodes SET lease_until = now() + make_interval(secs => \(leaseSeconds(lease)))
            WHERE id = \(node.hex) RETURNING id
            """, logger: logger)
        var found = false
        for try await _ in rows { found = true }
        return found
    }

    /// Removes nodes whose lease ran out, their users and their open login records, and tells
    /// everyone, in one transaction: of several nodes reaping at once, the row locks let one win.
    static func reap(by node: NodeID, _ c: PostgresConnection, _ logger: Logger) async throws -> [NodeID] {
        try await c.withTransaction(logger: logger) { c in
            let rows = try await c.query("""
                WITH dead AS (DELETE FROM cluster_nodes WHERE lease_until < now() RETURNING id),
                gone AS (DELETE FROM cluster_online o USING dead WHERE o.node_id = dead.id RETURNING o.name),
                closed AS (UPDATE sessions SET logout_at = \(nowMillis())
                           WHERE logout_at IS NULL AND name IN (SELECT name FROM gone) RETURNING 1)
                SELECT id, (SELECT count(*) FROM closed) FROM dead
                """, logger: logger)
            var dead: [NodeID] = []
            for try await (id, _) in rows.decode((String, Int64).self) { if let n = NodeID(id) { dead.append(n) } }
            for gone in dead {
                try await notify(ClusterEnvelope(origin: node, message: .nodeGone(gone)), on: clusterChannel, c, logger)
            }
            try await c.query("DELETE FROM cluster_payloads WHERE created_at < now() - interval '5 minutes'", logger: logger)
            return dead
        }
    }

    /// Claims `user` for this node unless a live node holds it; this node's own row must be live.
    /// Any login record still open for the name is stale (nobody live holds it) and is closed.
    static func claim(user: String, displayName: String, blocks: [String], node: NodeID, _ c: PostgresConnection,
                      _ logger: Logger) async throws -> Bool {
        try await c.withTransaction(logger: logger) { c in
            let rows = try await c.query("""
                INSERT INTO cluster_online (name, display_name, node_id, since)
                SELECT \(user), \(displayName), \(node.hex), now()
                WHERE EXISTS (SELECT 1 FROM cluster_nodes WHERE id = \(node.hex) AND lease_until > now())
                ON CONFLICT (name) DO UPDATE
                SET display_name = EXCLUDED.display_name, node_id = EXCLUDED.node_id, since = EXCLUDED.since
                WHERE cluster_online.node_id = EXCLUDED.node_id
                   OR NOT EXISTS (SELECT 1 FROM cluster_nodes n WHERE n.id = cluster_online.node_id AND n.lease_until > now())
                RETURNING name
                """, logger: logger)
            var claimed = false
            for try await _ in rows { claimed = true }
            guard claimed else { return false }
            try await c.query("UPDATE sessions SET logout_at = \(nowMillis()) WHERE name = \(user) AND logout_at IS NULL",
                              logger: logger)
            let envelope = ClusterEnvelope(origin: node, message: .online(user: user, displayName: displayName, blocks: blocks))
            try await notify(envelope, on: clusterChannel, c, logger)
            return true
        }
    }

    /// Releases this node's claim of `user` and tells everyone, if it still held it.
    static func release(user: String, displayName: String, blocks: [String], node: NodeID, _ c: PostgresConnection,
                        _ logger: Logger) async throws {
        try await c.withTransaction(logger: logger) { c in
            let rows = try await c.query(
                "DELETE FROM cluster_online WHERE name = \(user) AND node_id = \(node.hex) RETURNING name", logger: logger)
            var released = false
            for try await _ in rows { released = true }
            guard released else { return }
            let envelope = ClusterEnvelope(origin: node, message: .offline(user: user, displayName: displayName, blocks: blocks))
            try await notify(envelope, on: clusterChannel, c, logger)
        }
    }

    /// Stores a message in the offline queue and tells the recipient's node: one statement, then
    /// a commit that makes the row durable before the caller answers the sender.
    static func storeDirect(to recipient: String, on target: NodeID, sender: String, text: String, sentAt: Int64,
                            node: NodeID, _ c: PostgresConnection, _ logger: Logger) async throws {
        // One statement, so one round trip and one commit: the row and its notification, whose
        // payload gets the row's id in place of the 0 it was encoded with. The marker is unique:
        // keys are written sorted ("i" then "o"), and quotes inside texts are escaped.
        // That commit is asynchronous (`quick`, for this transaction only), so the recipient's node
        // hears of the row without waiting for the disk; the sender is answered only after the
        // second statement, whose synchronous commit waits until the WAL up to it, the row
        // included, is flushed (tested: without it a crash right after the ok loses the rows).
        // If the connection or the database fails in between, the sender hears an error for a row
        // its recipient may already have been shown (a retry then arrives twice), as when a lone
        // server dies between delivering a message and answering.
        let template = ClusterCodec.encode(ClusterEnvelope(
            origin: node, message: .direct(delivery: 0, to: recipient, fromDisplayName: sender, text: text, sentAtMillis: sentAt)))
        let marker = #""i":0,"o":"#
        if template.utf8.count + 20 <= ClusterCodec.maxNotificationBytes,
            template.utf8.firstRange(of: marker.utf8) != nil
        {
            try await c.query("""
                WITH quick AS (SELECT set_config('synchronous_commit', 'off', true)),
                m AS (
                    INSERT INTO offline_messages (recipient, sender, body, sent_at)
                    VALUES (\(recipient), \(sender), \(text), \(sentAt)) RETURNING id
                )
                SELECT pg_notify(\(channel(of: target)), replace(\(template), \(marker), '"i":' || m.id || ',"o":'))
                FROM m, quick
                """, logger: logger)
            // A commit flushes only if its transaction wrote WAL: a transactional logical message
            // is the smallest such write (no table, no row; readable by logical decoding only).
            // Where it is not granted (some hosted services revoke it), the node's own row is a
            // write this role always may make.
            do {
                try await c.query("SELECT pg_logical_emit_message(true, 'parley', '')", logger: logger)
            } catch where refusal(error) != nil {
                try await c.query("UPDATE cluster_nodes SET lease_until = lease_until WHERE id = \(node.hex)", logger: logger)
            }
            return
        }
        try await c.withTransaction(logger: logger) { c in
            let rows = try await c.query("""
                INSERT INTO offline_messages (recipient, sender, body, sent_at)
                VALUES (\(recipient), \(sender), \(text), \(sentAt)) RETURNING id
                """, logger: logger)
            var id: Int64 = 0
            for try await row in rows.decode(Int64.self) { id = row }
            let message = ClusterMessage.direct(delivery: id, to: recipient, fromDisplayName: sender, text: text, sentAtMillis: sentAt)
            try await notify(ClusterEnvelope(origin: node, message: message), on: channel(of: target), c, logger)
        }
    }

    /// Everyone online on other nodes whose lease holds.
    static func directory(excluding node: NodeID, _ c: PostgresConnection, _ logger: Logger) async throws -> [RemoteUser] {
        let rows = try await c.query("""
            SELECT o.name, o.display_name, o.node_id FROM cluster_online o
            JOIN cluster_nodes n ON n.id = o.node_id AND n.lease_until > now()
            WHERE o.node_id <> \(node.hex)
            """, logger: logger)
        var users: [RemoteUser] = []
        for try await (name, display, id) in rows.decode((String, String, String).self) {
            if let id = NodeID(id) { users.append(RemoteUser(name: name, displayName: display, node: id)) }
        }
        return users
    }

    /// The body of a payload row, if it is still there.
    static func payload(_ id: Int64, _ c: PostgresConnection, _ logger: Logger) async throws -> String? {
        let rows = try await c.query("SELECT body FROM cluster_payloads WHERE id = \(id)", logger: logger)
        var body: String?
        for try await row in rows.decode(String.self) { body = row }
        return body
    }

    /// Leaves: drops the node's remaining claims and its row, and says it is gone.
    static func leave(node: NodeID, _ c: PostgresConnection, _ logger: Logger) async throws {
        try await c.withTransaction(logger: logger) { c in
            try await c.query("DELETE FROM cluster_online WHERE node_id = \(node.hex)", logger: logger)
            try await c.query("DELETE FROM cluster_nodes WHERE id = \(node.hex)", logger: logger)
            try await notify(ClusterEnvelope(origin: node, message: .nodeGone(node)), on: clusterChannel, c, logger)
        }
    }

    static func leaseSeconds(_ lease: Duration) -> Double {
        Double(lease.components.seconds) + Double(lease.components.attoseconds) / 1e18
    }
}
