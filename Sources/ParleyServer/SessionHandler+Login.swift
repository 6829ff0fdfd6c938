import Foundation
import Logging
import NIOCore
import ParleyProtocol
import ParleyStore

extension SessionHandler {
    // MARK: login

    func login(username: String, password: String, id: Int64?) {
        let address = LoginAdmission.addressKey(context.channel.remoteAddress)
        // Kept so that a connection closing while its login waits for the name's turn cancels
        // the wait at once instead of leaving it queued.
        loginTask = runAsync({ [service] in
            await service.authenticate(username: username, password: password, address: address)
        }) { result in
            self.loginTask = nil
            switch result {
            case .failure(let error):
                self.reply(id, error)
            case .success(let account):
                self.goOnline(account, id: id)
            }
        }
    }

    private func goOnline(_ account: ChatService.Authenticated, id: Int64?) {
        guard case .connected = phase else { return }
        let hub = service.hub
        let session = Session(
            name: account.name, displayName: account.displayName, context: context,
            shard: hub.shard(for: context.eventLoop), maxBacklog: configuration.maxOutboundBacklog)
        guard hub.register(session, blocks: account.blocks, blockedBy: account.blockedBy) else {
            logger.info("login refused: already online", metadata: ["user": "\(account.name)"])
            reply(id, .alreadyOnline)
            return
        }
        phase = .online(session)
        session.onSlowConsumer = { [weak self] in self?.disconnectSlowConsumer() }
        lastActivity = .now()
        armIdleTimer(after: configuration.idleTimeout)
        logger.info("login", metadata: ["user": "\(account.name)", "peer": "\(peerDescription)"])
        send(.reply(.ok(id: id, .login(username: account.displayName, created: account.created))))
        let presence = ServerMessage.presence(user: account.displayName, online: true).frame(allocator: context.channel.allocator)
        hub.fanOut(presence, except: account.name, skipping: account.blocks)
        let store = service.store
        let name = account.name
        service.work.detached { try? await store.recordLogin(name: name, at: Date()) }
        deliverOffline(to: session, after: 0)
    }

    /// Sends stored messages oldest first, in batches, before any later request of this
    /// connection is handled; each is deleted only when the client acks it.
    private func deliverOffline(to session: Session, after lastID: Int64) {
        let store = service.store
        let limit = configuration.offlineBatchSize
        runAsync({ try? await store.pendingMessages(for: session.name, after: lastID, limit: limit) }) { batch in
            guard session.isOpen, let batch, let last = batch.last else { return }
            for stored in batch {
                let sent = Int64(stored.sentAt.timeIntervalSince1970 * 1000)
                self.unacked.insert(stored.id)
                self.send(.message(from: stored.sender, text: stored.text, delivery: stored.id, sent: sent))
            }
            if batch.count == limit { self.deliverOffline(to: session, after: last.id) }
        }
    }

    func acknowledge(_ delivery: Int64, id: Int64?, name: String) {
        runAsync({ [service] in try? await service.store.acknowledge(delivery: delivery, for: name) }) { _ in
            self.unacked.remove(delivery)
            if id != nil { self.send(.reply(.ok(id: id))) }
            if case .leaving = self.phase, self.unacked.isEmpty { self.closeNow() }
        }
    }

    // MARK: leaving

    /// Logs the user out of the hub and tells the others; safe to call more than once.
    func endSession(reason: String) {
        guard case .online(let session) = phase else { return }
        phase = .closed
        session.close()
        let hub = service.hub
        guard let entry = hub.unregister(session) else { return }
        endPrivateSessions(of: session, reason: reason)
        let presence = ServerMessage.presence(user: session.displayName, online: false).frame(allocator: context.channel.allocator)
        hub.fanOut(presence, except: session.name, skipping: entry.blocks)
        logger.info("session ended", metadata: ["user": "\(session.name)", "reason": "\(reason)"])
        let store = service.store
        let name = session.name
        service.work.detached { _ = try? await store.recordLogout(name: name, at: Date()) }
    }

    /// Ends the session at once for everyone else; the connection stays open (bounded) only for
    /// acks of stored messages already sent, so a quick logout does not make them show twice.
    func logOut(_ session: Session) {
        endSession(reason: "logout")
        guard !unacked.isEmpty else { return closeNow() }
        phase = .leaving(name: session.name)
        armIdleTimer(after: .seconds(2))
    }

    /// Flushes what is queued, then closes (TLS sends close_notify).
    func closeNow() {
        phase = .closed
        context.flush()
        context.close(promise: nil)
    }

    private func disconnectSlowConsumer() {
        logger.notice("disconnecting a client that stopped reading", metadata: peerMetadata)
        endSession(reason: "slow consumer")
        // Queued behind the backlog (straight to the channel, the session is gone): a client that
        // wakes up in time learns why it was dropped.
        send(.loggedOut(reason: .slowConsumer), flush: true)
        context.close(promise: nil)
    }

    // MARK: idle timeout

    func armIdleTimer(after delay: TimeAmount) {
        idleTimer?.cancel()
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            idleTimerFired()
        }
    }

    private func idleTimerFired() {
        switch phase {
        case .closed:
            return
        case .leaving:
            closeNow()
        case .connected:
            logger.info("closing a connection that did not log in in time", metadata: peerMetadata)
            context.close(promise: nil)
        case .online(let session):
            let deadline = lastActivity + configuration.idleTimeout
            if deadline > .now() {
                armIdleTimer(after: deadline - .now())
                return
            }
            logger.info("timeout", metadata: ["user": "\(session.name)"])
            send(.loggedOut(reason: .timeout), flush: true)
            endSession(reason: "timeout")
            context.close(promise: nil)
        }
    }

    // MARK: plumbing

    /// Runs `work` off the event loop, then `then` back on it; later frames wait, so requests
    /// from one connection take effect in the order they were sent.
    @discardableResult
    func runAsync<T: Sendable>(_ work: @escaping @Sendable () async -> T, then: @escaping (T) -> Void) -> Task<Void, Never>? {
        let inFlight = service.work
        // Shutting down: the task could outlive this event loop, so the connection just closes.
        guard inFlight.enter() else {
            context.close(promise: nil)
            return nil
        }
        busy = true
        let promise = context.eventLoop.makePromise(of: T.self)
        let task = Task { promise.succeed(await work()) }
        promise.futureResult.assumeIsolated().whenSuccess { value in
            // Counted until its outcome is applied: a login must not go online on a stopping loop.
            defer { inFlight.leave() }
            self.busy = false
            if case .closed = self.phase { return }
            guard !inFlight.isClosed else { return self.context.close(promise: nil) }
            then(value)
            self.drainQueue()
        }
        return task
    }

    /// Queues a message to this client; replies ride the same per-loop flush as fan-out.
    func send(_ message: ServerMessage, flush: Bool = false) {
        let frame = message.frame(allocator: context.channel.allocator)
        if case .online(let session) = phase {
            session.send(frame)
            if flush { session.flushIfDirty() }
        } else {
            context.writeAndFlush(NIOAny(frame), promise: nil)
        }
    }

    func reply(_ id: Int64?, _ code: ErrorCode, _ message: String? = nil) {
        send(.reply(.error(id: id, code, message: message)))
        if case .connected = phase { context.flush() }
    }

    func reply(_ id: Int64?, _ error: ProtocolError) {
        reply(id, error.code, error.message)
    }

    var peerDescription: String { context.channel.remoteAddress.map { "\($0)" } ?? "?" }
    var peerMetadata: Logger.Metadata { ["peer": "\(peerDescription)"] }
}
