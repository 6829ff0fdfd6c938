import Foundation
import Logging
import NIOCore
import ParleyCluster
import ParleyProtocol
import ParleyProtocolNIO
import ParleyStore

/// The commands the state machine hands over: what needs the hub, the fan-out or the store.
extension ClientHandler {
    func run(_ command: Machine.Command, id: Int64?) {
        switch command {
        case .login(let username, let password):
            login(username: username, password: password, id: id)
        case .message(let to, let text):
            message(to: to, text: text, id: id)
        case .broadcast(let text):
            guard let onlineUser else { return }
            service.metrics.broadcasts.increment()
            let skip = service.hub.blockers(of: onlineUser.name)
            let frame = ServerMessage.broadcast(from: onlineUser.displayName, text: text).frame(allocator: context.channel.allocator)
            service.hub.fanOut(frame, except: onlineUser.name, skipping: skip, chat: true)
            // At most one notification; each node fans out to its own users.
            let route = service.hub.broadcastRoute()
            if route != .nowhere {
                let message = ClusterMessage.broadcast(from: onlineUser.name, displayName: onlineUser.displayName, text: text,
                                                       skipping: skip.sorted())
                if case .node(let node) = route { service.cluster.send(message, to: node) } else { service.cluster.publish(message) }
            }
            let unreachable = !skip.isEmpty && service.hub.isAnyOnline(skip)
            send(.reply(.ok(id: id, .broadcast(unreachable: unreachable))))
        case .whoelse:
            guard let onlineUser else { return }
            send(.reply(.ok(id: id, .users(service.hub.onlineNames(visibleTo: onlineUser.name)))))
        case .whoelsesince(let seconds):
            guard let viewer = onlineUser?.name else { return }
            runTask({ await $0.usersActive(withinLast: seconds, viewer: viewer) }) { result in
                switch result {
                case .success(let users): self.send(.reply(.ok(id: id, .users(users))))
                case .failure(let error): self.reply(id, error)
                }
            }
        case .setBlock(let target, let active):
            guard let name = onlineUser?.name else { return }
            runTask({ await $0.setBlock(blocker: name, blocked: target, active: active) }) { error in
                if let error { return self.reply(id, error) }
                if active { self.privateBlockChanged(blocked: target) }
                self.send(.reply(.ok(id: id)))
            }
        case .acknowledge(let delivery, let user):
            acknowledge(delivery, of: user, id: id)
        case .changePassword(let user, let old, let new):
            changePassword(user, old: old, new: new, id: id)
        case .privateLink(let request):
            handlePrivate(request, id: id)
        }
    }

    private func message(to recipient: String, text: String, id: Int64?) {
        guard let onlineUser else { return }
        service.metrics.messages.increment()
        if service.hub.blockers(of: onlineUser.name).contains(recipient) {
            return reply(id, .recipientBlockedYou)
        }
        let frame = ServerMessage.message(from: onlineUser.displayName, text: text).frame(allocator: context.channel.allocator)
        let service = self.service
        let sender = onlineUser.displayName
        let delivered = service.hub.deliver(frame, to: recipient) {
            // The recipient left between lookup and delivery: keep the message for their next login.
            service.background { _ = await $0.storeOffline(to: recipient, from: sender, text: text, withinQuota: false) }
        }
        if delivered {
            send(.reply(.ok(id: id)))
            return
        }
        if case .remote(let node) = service.hub.location(of: recipient) {
            runTask({ await $0.storeDirect(to: recipient, on: node, from: sender, senderDisplayName: sender, text: text) }) { error in
                if let error { self.reply(id, error) } else { self.send(.reply(.ok(id: id))) }
            }
            return
        }
        runTask({ await $0.storeOffline(to: recipient, from: sender, text: text) }) { error in
            if let error { self.reply(id, error) } else { self.send(.reply(.ok(id: id))) }
        }
    }

    /// The old password is checked like a login's (it counts towards the lockout); a check that
    /// finds the name locked ends the session after the reply, as the lock means no one is in.
    private func changePassword(_ user: String, old: String, new: String, id: Int64?) {
        let address = LoginAdmission.addressKey(context.channel.remoteAddress)
        runTask({ await $0.changePassword(name: user, old: old, new: new, address: address) }) { result in
            switch result {
            case .success:
                self.send(.reply(.ok(id: id)))
            case .failure(let error):
                self.reply(id, error)
                if error.code == .accountLockedNow || error.code == .accountLocked {
                    self.perform(self.machine.accountLocked())
                }
            }
        }
    }

    // MARK: login

    private func login(username: String, password: String, id: Int64?) {
        let peer = context.channel.remoteAddress
        let service = self.service
        loginTask = runTask({ await $0.logIn(username: username, password: password, peer: peer) }, abandoned: { result in
            if case .success(let account) = result { service.releaseClaim(account) }
        }) { result in
            self.loginTask = nil
            switch result {
            case .failure(let error):
                self.perform(self.machine.loginFinished(as: nil))
                self.reply(id, error)
            case .success(let account):
                self.goOnline(account, id: id)
            }
        }
    }

    private func goOnline(_ account: ChatService.Authenticated, id: Int64?) {
        let hub = service.hub
        let onlineUser = OnlineUser(
            name: account.name, displayName: account.displayName, context: context,
            shard: hub.shard(for: context.eventLoop), maxBacklog: configuration.maxOutboundBacklog)
        guard hub.register(onlineUser, blocks: account.blocks, blockedBy: account.blockedBy) else {
            logger.info("login refused: already online", metadata: ["user": "\(account.name)"])
            perform(machine.loginFinished(as: nil))
            reply(id, .alreadyOnline)
            return
        }
        wentOnline(onlineUser)
        service.metrics.usersLoggedIn.increment()
        perform(machine.loginFinished(as: account.name))
        logger.info("login", metadata: ["user": "\(account.name)", "peer": "\(peerDescription)"])
        send(.reply(.ok(id: id, .login(username: account.displayName, created: account.created))))
        let presence = ServerMessage.presence(user: account.displayName, online: true).frame(allocator: context.channel.allocator)
        hub.fanOut(presence, except: account.name, skipping: account.blocks)
        let name = account.name
        service.background { await $0.recordLogin(name) }
        deliverOffline(to: onlineUser, after: 0)
    }

    /// Sends stored messages oldest first, in batches, before any later request of this
    /// connection is handled; each is deleted only when the client acks it. The first batch comes
    /// with a last look at the account (see `ChatService.loginDelivery`).
    private func deliverOffline(to onlineUser: OnlineUser, after lastID: Int64) {
        let name = onlineUser.name
        guard lastID == 0 else {
            runTask({ await $0.pendingMessages(for: name, after: lastID) }) { batch in
                self.send(batch, to: onlineUser)
            }
            return
        }
        runTask({ await $0.loginDelivery(for: name) }) { outcome in
            guard outcome.enabled else {
                _ = self.endedByOperator(.disabled)
                return
            }
            self.send(outcome.batch, to: onlineUser)
        }
    }

    private func send(_ batch: [StoredMessage]?, to onlineUser: OnlineUser) {
        guard onlineUser.isOpen, let batch, let last = batch.last else { return }
        // A message routed from another node may have been sent on this connection already.
        for stored in batch where !machine.unacked.contains(stored.id) {
            let sent = Int64(stored.sentAt.timeIntervalSince1970 * 1000)
            machine.storedMessageSent(stored.id)
            send(.message(from: stored.sender, text: stored.text, delivery: stored.id, sent: sent))
        }
        if batch.count == configuration.offlineBatchSize { deliverOffline(to: onlineUser, after: last.id) }
    }

    /// A message stored for this user by another node and routed here while they are online: sent
    /// like a stored one (with its delivery id), so their ack deletes it and a lost connection
    /// keeps it for the next login.
    func deliverRouted(delivery: Int64, from sender: String, text: String, sentAtMillis: Int64) {
        guard onlineUser?.isOpen == true, !machine.unacked.contains(delivery) else { return }
        machine.storedMessageSent(delivery)
        send(.message(from: sender, text: text, delivery: delivery, sent: sentAtMillis))
    }

    /// The node listens again after losing the database: a message routed here meanwhile was
    /// stored but its notification lost, so stored messages not yet sent on this connection go now.
    func deliverMissedRouted() {
        guard let onlineUser, onlineUser.isOpen else { return }
        deliverOffline(to: onlineUser, after: 0)
    }

    /// The cluster lease may have run out, so other nodes may let this user log in elsewhere: the
    /// session ends now rather than risk a second login.
    func clusterLeaseLost() {
        guard onlineUser != nil else { return }
        send(.error(code: .internal, message: "the server lost contact with the cluster; please log in again"), flush: true)
        perform(.close(.disconnected))
    }

    private func acknowledge(_ delivery: Int64, of name: String, id: Int64?) {
        runTask({ await $0.acknowledge(delivery, for: name) }) { deleted in
            // The ok says the message will not come again, so it is sent only once that is durable.
            if id != nil { deleted ? self.send(.reply(.ok(id: id))) : self.reply(id, .internal) }
            self.perform(self.machine.acknowledged(delivery))
        }
    }
}
