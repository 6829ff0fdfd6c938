import Logging
import NIOCore
import ParleyCluster
import ParleyCrypto
import ParleyProtocol

/// Private sessions, server side: the server only introduces the two clients. It relays each
/// side's public-key fingerprint, the accepter's address and port, and a fresh session id; the
/// chat itself goes peer to peer over mutually pinned TLS 1.3 and never reaches the server.
/// Requests and pairs live in the hub, with the online entries of the two users.
extension ClientHandler {
    func handlePrivate(_ request: Request, id: Int64?) {
        guard let onlineUser else { return }
        switch request {
        case .startPrivate(let user, let fingerprint):
            startPrivate(user, fingerprint: fingerprint, id: id, onlineUser: onlineUser)
        case .privateAnswer(let user, let accept, let port, let fingerprint):
            answerPrivate(user, accept: accept, port: port, fingerprint: fingerprint, id: id, onlineUser: onlineUser)
        case .stopPrivate(let user):
            stopPrivate(user, id: id, onlineUser: onlineUser)
        default:
            return
        }
    }

    private func startPrivate(_ user: String, fingerprint: String, id: Int64?, onlineUser: OnlineUser) {
        guard Validation.isValidUsername(user) else { return reply(id, .unknownUser) }
        let target = Validation.canonicalUsername(user)
        guard target != onlineUser.name else {
            return reply(id, .cannotMessageSelf, "Error. Cannot start private messaging with yourself")
        }
        let limit = configuration.maxPendingPrivateRequests
        let filing = service.hub.requestPrivate(from: onlineUser.name, to: target, fingerprint: fingerprint, limit: limit)
        switch filing {
        case .filed(let request):
            deliverPrivate(.privateRequest(from: onlineUser.displayName), to: target)
            requestFiled(request, id: id, target: target)
        case .filedRemote(let request, let node):
            let relay = PrivateRelay.request(from: onlineUser.name, displayName: onlineUser.displayName,
                                             fingerprint: fingerprint, token: Int64(clamping: request.token))
            service.filings.expect(request.token)
            service.cluster.send(.privateLink(to: target, relay), to: node)
            // The reply waits for the target's node, so that a refusal there (the target's request
            // limit, a race with a block) is this reply's error, as on one node.
            let loop = context.eventLoop
            let timeout = configuration.remoteFilingTimeout
            let waiting = runTask({ await $0.filings.wait(token: request.token, timeout: timeout, on: loop) }) { answer in
                if case .refused(let code, let message) = answer {
                    _ = self.service.hub.remoteDeclined(requester: onlineUser.name, by: target, token: request.token)
                    return self.reply(id, code, message)
                }
                self.requestFiled(request, id: id, target: target)
            }
            if waiting == nil { service.filings.forget(request.token) }
        case .targetOffline:
            // Unknown and offline get different answers, as for messages; neither reveals an address.
            runTask({ await $0.accountExists(target) }) { exists in
                self.reply(id, exists ? .userOffline : .unknownUser)
            }
        default:
            if let (code, message) = filing.refusal(limit: limit) { reply(id, code, message) }
        }
    }

    /// The request is filed on both sides: ok, and the answer timer.
    private func requestFiled(_ pending: PrivatePair.Request, id: Int64?, target: String) {
        send(.reply(.ok(id: id)))
        // No answer in time counts as a decline; the token makes a stale timer harmless.
        context.eventLoop.assumeIsolated().scheduleTask(in: configuration.privateAnswerTimeout) { [self] in
            guard service.hub.expirePrivate(pending) else { return }
            if self.onlineUser != nil { send(.privateDeclined(user: pending.target.displayName), flush: true) }
            deliverPrivate(.privateStopped(user: pending.requester.displayName, reason: "no answer in time"), to: target)
        }
    }

    private func answerPrivate(
        _ user: String, accept: Bool, port: UInt16?, fingerprint: String?, id: Int64?, onlineUser: OnlineUser
    ) {
        let requester = Validation.canonicalUsername(user)
        guard Validation.isValidUsername(user),
            let pending = service.hub.takePrivateRequest(from: requester, to: onlineUser.name)
        else { return reply(id, .privateNoRequest) }
        guard accept else {
            deliverPrivate(.privateDeclined(user: onlineUser.displayName), to: requester)
            return send(.reply(.ok(id: id)))
        }
        guard let port, port > 0, let fingerprint else {
            deliverPrivate(.privateDeclined(user: onlineUser.displayName), to: requester)
            return reply(id, .badFrame, "Error. Accepting needs 'port' and 'fingerprint'")
        }
        guard let host = context.channel.remoteAddress?.ipAddress else { return reply(id, .internal) }
        guard service.hub.pairPrivate(pending) else { return reply(id, .userOffline) }
        let linkID = SecureRandom.hex(bytes: 16)
        // The accepter learns the session first, so its listener knows what to expect before the
        // requester (told second) can connect; the client also waits for it if not.
        send(.privateStarted(user: pending.requester.displayName, fingerprint: pending.fingerprint, linkID: linkID))
        send(.reply(.ok(id: id)), flush: true)
        deliverPrivate(
            .privateAccepted(user: onlineUser.displayName, host: host, port: port, fingerprint: fingerprint, linkID: linkID),
            to: requester)
        logger.info("private session set up", metadata: ["users": "\(requester),\(onlineUser.name)"])
    }

    private func stopPrivate(_ user: String, id: Int64?, onlineUser: OnlineUser) {
        let other = Validation.canonicalUsername(user)
        guard Validation.isValidUsername(user), let peer = service.hub.stopPrivate(onlineUser.name, other) else {
            return reply(id, .privateNotEnabled, "Error. Private messaging to \(user) not enabled")
        }
        deliverPrivate(.privateStopped(user: onlineUser.displayName, reason: "\(onlineUser.displayName) stopped private messaging"), to: peer.name)
        send(.reply(.ok(id: id)))
    }

    /// A block in either direction ends the pair's private session at once; both clients close it.
    func privateBlockChanged(blocked target: String) {
        guard let onlineUser, let peer = service.hub.stopPrivate(onlineUser.name, target) else { return }
        send(.privateStopped(user: peer.displayName, reason: "blocked"))
        deliverPrivate(.privateStopped(user: onlineUser.displayName, reason: "blocked"), to: target)
    }
}
