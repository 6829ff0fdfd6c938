import Logging
import NIOCore
import ParleyCrypto
import ParleyProtocol

/// Private sessions, server side: the server only introduces the two clients. It relays each
/// side's public-key fingerprint, the accepter's address and port, and a fresh session id; the
/// chat itself goes peer to peer over mutually pinned TLS 1.3 and never reaches the server.
extension SessionHandler {
    func handlePrivate(_ request: Request, id: Int64?, session: Session) {
        switch request {
        case .startPrivate(let user, let fingerprint):
            startPrivate(user, fingerprint: fingerprint, id: id, session: session)
        case .privateAnswer(let user, let accept, let port, let fingerprint):
            answerPrivate(user, accept: accept, port: port, fingerprint: fingerprint, id: id, session: session)
        case .stopPrivate(let user):
            stopPrivate(user, id: id, session: session)
        default:
            return
        }
    }

    private func me(_ session: Session) -> PrivateSessions.Party {
        .init(name: session.name, displayName: session.displayName)
    }

    private func startPrivate(_ user: String, fingerprint: String, id: Int64?, session: Session) {
        guard Validation.isValidUsername(user) else { return reply(id, .unknownUser) }
        let target = Validation.canonicalUsername(user)
        guard target != session.name else {
            return reply(id, .cannotMessageSelf, "Error. Cannot start private messaging with yourself")
        }
        guard let entry = service.hub.entry(target) else {
            // Unknown and offline get different answers, as for messages; neither reveals an address.
            runAsync({ [service] in await service.accountExists(target) }) { exists in
                self.reply(id, exists ? .userOffline : .unknownUser)
            }
            return
        }
        let peer = PrivateSessions.Party(name: target, displayName: entry.displayName)
        if service.hub.blockers(of: session.name).contains(target) {
            return reply(id, .privateNotEnabled, "Error. Private messaging with \(peer.displayName) is not possible: \(peer.displayName) has blocked you")
        }
        if service.hub.blocked(by: session.name).contains(target) {
            return reply(id, .privateNotEnabled, "Error. You have blocked \(peer.displayName); unblock them first")
        }
        let pending: PrivateSessions.Request
        switch service.privateSessions.request(
            from: me(session), to: peer, fingerprint: fingerprint, limit: configuration.maxPendingPrivateRequests)
        {
        case .filed(let request):
            pending = request
        case .duplicate:
            return reply(id, .privateAlreadyActive, "Error. A private session or request with \(peer.displayName) already exists")
        case .tooMany(let party):
            let limit = configuration.maxPendingPrivateRequests
            let text =
                party.name == session.name
                ? "Error. You have \(limit) private requests waiting for an answer; wait for one to end"
                : "Error. \(peer.displayName) has too many private requests waiting; try again later"
            return reply(id, .tooManyRequests, text)
        }
        deliverPrivate(.privateRequest(from: session.displayName), to: target)
        send(.reply(.ok(id: id)))
        // No answer in time counts as a decline; the token makes a stale timer harmless.
        context.eventLoop.assumeIsolated().scheduleTask(in: configuration.privateAnswerTimeout) { [self] in
            guard service.privateSessions.expire(pending) else { return }
            if case .online = phase { send(.privateDeclined(user: peer.displayName), flush: true) }
            deliverPrivate(.privateStopped(user: session.displayName, reason: "no answer in time"), to: target)
        }
    }

    private func answerPrivate(
        _ user: String, accept: Bool, port: UInt16?, fingerprint: String?, id: Int64?, session: Session
    ) {
        let requester = Validation.canonicalUsername(user)
        guard Validation.isValidUsername(user),
            let pending = service.privateSessions.takeRequest(from: requester, to: session.name)
        else { return reply(id, .privateNoRequest) }
        guard accept else {
            deliverPrivate(.privateDeclined(user: session.displayName), to: requester)
            return send(.reply(.ok(id: id)))
        }
        guard let port, port > 0, let fingerprint else {
            deliverPrivate(.privateDeclined(user: session.displayName), to: requester)
            return reply(id, .badFrame, "Error. Accepting needs 'port' and 'fingerprint'")
        }
        guard service.hub.entry(requester) != nil else { return reply(id, .userOffline) }
        guard let host = context.channel.remoteAddress?.ipAddress else { return reply(id, .internal) }
        let sessionID = SecureRandom.hex(bytes: 16)
        service.privateSessions.activate(pending.requester, me(session))
        // The accepter learns the session first, so its listener knows what to expect before the
        // requester (told second) can connect; the client also waits for it if not.
        send(.privateStarted(user: pending.requester.displayName, fingerprint: pending.fingerprint, session: sessionID))
        send(.reply(.ok(id: id)), flush: true)
        deliverPrivate(
            .privateAccepted(user: session.displayName, host: host, port: port, fingerprint: fingerprint, session: sessionID),
            to: requester)
        logger.info("private session set up", metadata: ["users": "\(requester),\(session.name)"])
    }

    private func stopPrivate(_ user: String, id: Int64?, session: Session) {
        let other = Validation.canonicalUsername(user)
        guard Validation.isValidUsername(user), let ended = service.privateSessions.stop(session.name, other) else {
            return reply(id, .privateNotEnabled, "Error. Private messaging to \(user) not enabled")
        }
        deliverPrivate(.privateStopped(user: session.displayName, reason: "\(session.displayName) stopped private messaging"), to: ended.peer.name)
        send(.reply(.ok(id: id)))
    }

    /// A block in either direction ends the pair's private session at once; both clients close it.
    func privateBlockChanged(blocked target: String, session: Session) {
        guard let ended = service.privateSessions.stop(session.name, target) else { return }
        send(.privateStopped(user: ended.peer.displayName, reason: "blocked"))
        deliverPrivate(.privateStopped(user: session.displayName, reason: "blocked"), to: target)
    }

    /// The user left (logout, timeout, lost connection): every peer is told why.
    func endPrivateSessions(of session: Session, reason: String) {
        let ended = service.privateSessions.removeAll(involving: session.name)
        guard !ended.isEmpty else { return }
        let why =
            switch reason {
            case "logout": "\(session.displayName) logged out"
            case "timeout": "\(session.displayName) timed out"
            default: "\(session.displayName) lost the connection to the server"
            }
        for end in ended {
            deliverPrivate(.privateStopped(user: session.displayName, reason: why), to: end.peer.name)
        }
    }

    private func deliverPrivate(_ message: ServerMessage, to name: String) {
        // A user who left meanwhile has no private state left to update: nothing to keep.
        _ = service.hub.deliver(message.frame(allocator: context.channel.allocator), to: name, onMiss: {})
    }
}
