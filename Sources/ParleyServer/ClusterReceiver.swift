import NIOCore
import ParleyCluster
import ParleyProtocol
import ParleyProtocolNIO

/// Applies what the other nodes say to this node: their users' presence in the hub's directory
/// (and to the local users, as presence events), broadcasts fanned out to local users as local
/// ones are, messages routed to a local user, block changes and private-link steps. One task
/// reads the bus's events in order, so a node's notifications take effect in the order it sent them.
final class ClusterReceiver: Sendable {
    private let service: ChatService
    private var hub: Hub { service.hub }

    init(service: ChatService) {
        self.service = service
    }

    /// Runs until the bus finishes its event stream (shutdown).
    func run() async {
        for await event in service.cluster.events {
            apply(event)
        }
    }

    func apply(_ event: ClusterEvent) {
        switch event {
        case .message(let envelope):
            apply(envelope.message, from: envelope.origin)
        case .directory(let snapshot):
            let change = hub.replaceRemotes(with: snapshot, myself: service.cluster.node)
            for user in change.added { presence(user.name, user.displayName, online: true, skipping: nil) }
            for user in change.removed { presence(user.name, user.displayName, online: false, skipping: nil) }
            endLinks(change.links)
            // Notifications sent while this node was not listening are lost; the messages among
            // them are stored rows, sent now (the handler skips those it already sent).
            for user in hub.localUsers() { user.eventLoop.execute { user.handler?.deliverMissedRouted() } }
        case .dropLocalUsers:
            let users = hub.localUsers()
            if !users.isEmpty {
                service.logger.warning("cluster lease may have run out: logging out \(users.count) local users")
            }
            for user in users { user.eventLoop.execute { user.handler?.clusterLeaseLost() } }
        }
    }

    private func apply(_ message: ClusterMessage, from origin: NodeID) {
        switch message {
        case .online(let user, let display, let blocks):
            if hub.addRemote(RemoteUser(name: user, displayName: display, node: origin)) {
                presence(user, display, online: true, skipping: Set(blocks))
            }
        case .offline(let user, let display, let blocks):
            if hub.removeRemote(user, on: origin) != nil { presence(user, display, online: false, skipping: Set(blocks)) }
        case .broadcast(let from, let display, let text, let skipping):
            let frame = ServerMessage.broadcast(from: display, text: text).frame()
            hub.fanOut(frame, except: from, skipping: Set(skipping))
        case .direct(let delivery, let to, let display, let text, let sentAt):
            // Not online here (any more): the stored row waits for the next login, wherever it is.
            guard case .local(let user) = hub.location(of: to) else { return }
            user.eventLoop.execute {
                user.handler?.deliverRouted(delivery: delivery, from: display, text: text, sentAtMillis: sentAt)
            }
        case .block(let blocker, let blocked, let active):
            hub.noteBlock(blocker: blocker, blocked: blocked, active: active)
        case .privateLink(let to, let relay):
            applyPrivate(relay, to: to, from: origin)
        case .nodeGone(let node):
            let gone = hub.removeRemotes(on: node)
            if !gone.users.isEmpty {
                service.logger.notice("node \(node) left the cluster without logging out; \(gone.users.count) users are offline")
            }
            for user in gone.users { presence(user.name, user.displayName, online: false, skipping: nil) }
            endLinks(gone.links)
        case .reference:
            // The bus resolves references before handing messages on.
            return
        }
    }

    /// Tells local users that a remote user came or went; `skipping` is who that user blocks,
    /// or nil to work it out from the local entries (the user's own node did not say).
    private func presence(_ name: String, _ display: String, online: Bool, skipping: Set<String>?) {
        let frame = ServerMessage.presence(user: display, online: online).frame()
        hub.fanOut(frame, except: name, skipping: skipping ?? hub.localUsersBlocked(by: name))
    }

    private func endLinks(_ links: [Hub.OrphanedLink]) {
        for link in links {
            let frame = ServerMessage.privateStopped(
                user: link.peer.displayName, reason: "\(link.peer.displayName) lost the connection to the server"
            ).frame()
            _ = hub.deliver(frame, to: link.local, onMiss: {})
        }
    }

    private func applyPrivate(_ relay: PrivateRelay, to target: String, from origin: NodeID) {
        let deliver = { (message: ServerMessage) in _ = self.hub.deliver(message.frame(), to: target, onMiss: {}) }
        switch relay {
        case .request(let from, let display, let fingerprint, let token):
            let requester = PrivatePair.Party(name: from, displayName: display)
            let limit = service.configuration.maxPendingPrivateRequests
            let filing = hub.fileRemoteRequest(from: requester, to: target, fingerprint: fingerprint, token: token, limit: limit)
            // The requester's node holds its user's reply until it hears which.
            let answer: PrivateRelay
            if case .filed(let request) = filing {
                deliver(.privateRequest(from: display))
                answer = .filed(by: target, displayName: request.target.displayName, token: token)
            } else {
                let (code, message) = filing.refusal(limit: limit) ?? (.internal, ErrorCode.internal.defaultMessage)
                answer = .refused(by: target, displayName: filing.peer?.displayName ?? target, token: token, code: code,
                                  message: message)
            }
            service.cluster.send(.privateLink(to: from, answer), to: origin)
        case .filed(_, _, let token):
            service.filings.answer(UInt64(clamping: token), .filed)
        case .refused(let by, let display, let token, let code, let message):
            // Too late for the reply (it said ok): the request ends as a stop, as it would have before.
            guard !service.filings.answer(UInt64(clamping: token), .refused(code, message)) else { return }
            guard hub.remoteDeclined(requester: target, by: by, token: UInt64(clamping: token)) else { return }
            deliver(.privateStopped(user: display, reason: message))
        case .accepted(let by, let display, let host, let port, let fingerprint, let linkID):
            guard hub.remoteAccepted(requester: target, by: PrivatePair.Party(name: by, displayName: display)) else { return }
            deliver(.privateAccepted(user: display, host: host, port: UInt16(port), fingerprint: fingerprint, linkID: linkID))
        case .declined(let by, let display):
            guard hub.remoteDeclined(requester: target, by: by) else { return }
            deliver(.privateDeclined(user: display))
        case .stopped(let by, let display, let reason):
            guard hub.stopPrivate(target, by) != nil else { return }
            deliver(.privateStopped(user: display, reason: reason))
        }
    }
}

extension PrivateRelay {
    /// The relay that carries `message` (sent by one private-link party to the other) to another
    /// node; nil for messages that are not private-link steps.
    init?(relaying message: ServerMessage) {
        switch message {
        case .privateAccepted(let user, let host, let port, let fingerprint, let linkID):
            self = .accepted(by: Validation.canonicalUsername(user), displayName: user, host: host, port: Int(port),
                             fingerprint: fingerprint, linkID: linkID)
        case .privateDeclined(let user):
            self = .declined(by: Validation.canonicalUsername(user), displayName: user)
        case .privateStopped(let user, let reason):
            self = .stopped(by: Validation.canonicalUsername(user), displayName: user, reason: reason)
        default:
            return nil
        }
    }
}
