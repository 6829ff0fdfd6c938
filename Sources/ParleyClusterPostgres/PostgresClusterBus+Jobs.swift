import Logging
import ParleyCluster
import PostgresNIO

/// The bus's two ordered loops: the jobs run one at a time on the control connection (so this
/// node's notifications commit in the order the server asked for them), and the inbound
/// notifications are applied one at a time after the directory snapshot they follow.
extension PostgresClusterBus {
    func runJobs() async {
        for await job in jobStream {
            await run(job)
            if case .leave = job { return }
        }
    }

    /// The control connection when this node may use it, with its generation.
    private func control(needingLease: Bool) -> (PostgresConnection, Int)? {
        state.withLockedValue { s in
            guard let c = s.control else { return nil }
            if needingLease, !s.membership.acceptsLogins { return nil }
            return (c, s.generation)
        }
    }

    private func run(_ job: Job) async {
        // Held notifications go out before any newer statement that notifies, keeping this node's
        // order (except in the short wait after a rejoin, when claims and messages go first).
        switch job {
        case .claim, .release, .direct: await sendUnsent()
        default: break
        }
        switch job {
        case .claim(let user, let display, let blocks, let done):
            guard case let (c, generation)? = control(needingLease: true) else { return done.resume(returning: .unavailable) }
            do {
                let claimed = try await ClusterSQL.claim(user: user, displayName: display, blocks: blocks, node: node, c, logger)
                if claimed { state.withLockedValue { _ = $0.held.insert(user) } }
                done.resume(returning: claimed ? .claimed : .taken)
            } catch {
                failed(error, generation)
                done.resume(returning: .unavailable)
            }
        case .release(let user, let display, let blocks):
            state.withLockedValue { _ = $0.held.remove(user) }
            // Unreachable now: the rejoin hands back every claim no user here holds any more.
            guard case let (c, generation)? = control(needingLease: false) else { return }
            do {
                try await ClusterSQL.release(user: user, displayName: display, blocks: blocks, node: node, c, logger)
            } catch {
                failed(error, generation)
            }
        case .publish(let message, let channel):
            let first = state.withLockedValue { s -> Bool in
                s.hold(Unsent(message: message, channel: channel, queuedAt: .now))
                return s.unsent.count == 1 && s.control == nil
            }
            if first { logger.notice("cluster database unreachable: holding notifications to the other nodes until it is back") }
            await sendUnsent()
        case .direct(let to, let target, let sender, let text, let sentAt, let done):
            guard case let (c, generation)? = control(needingLease: false) else { return done.resume(returning: .failure(.unavailable)) }
            do {
                try await ClusterSQL.storeDirect(to: to, on: target, sender: sender, text: text, sentAt: sentAt, node: node, c, logger)
                done.resume(returning: .success(()))
            } catch where ClusterSQL.refusal(error)?.serverInfo?[.sqlState] == "23503" {
                done.resume(returning: .failure(.unknownRecipient))
            } catch {
                failed(error, generation)
                done.resume(returning: .failure(.unavailable))
            }
        case .join(let generation):
            await join(generation)
        case .renew:
            await renew()
        case .catchUp(let generation):
            guard case let (c, current)? = control(needingLease: false), current == generation else { return }
            do {
                let users = try await ClusterSQL.directory(excluding: node, c, logger)
                inbound.yield(.caughtUp(generation: generation, users))
            } catch {
                failed(error, generation)
            }
        case .resolve(let id, let done):
            guard case let (c, generation)? = control(needingLease: false) else { return done.resume(returning: nil) }
            do {
                done.resume(returning: try await ClusterSQL.payload(id, c, logger))
            } catch {
                failed(error, generation)
                done.resume(returning: nil)
            }
        case .flushHeld:
            state.withLockedValue { $0.heldUntil = nil }
            await sendUnsent()
        case .leave(let done):
            if case let (c, _)? = control(needingLease: false) {
                do { try await ClusterSQL.leave(node: node, c, logger) } catch {
                    logger.warning("leaving the cluster failed (the others notice at the end of the lease): \(String(reflecting: error))")
                }
            }
            done.resume()
        }
    }

    private func join(_ generation: Int) async {
        guard case let (c, current)? = control(needingLease: false), current == generation else { return }
        let held = state.withLockedValue { Array($0.held) }
        do {
            try await ClusterSQL.join(node: node, name: settings.nodeName, lease: settings.lease, held: held, c, logger)
            perform(state.withLockedValue { $0.membership.joined() })
            logger.info("joined the cluster", metadata: ["id": "\(node)"])
            let waiting = state.withLockedValue { s -> Bool in
                guard !s.unsent.isEmpty else { return false }
                s.heldUntil = .now + Self.heldFlushDelay
                return true
            }
            if waiting {
                let delay = Self.heldFlushDelay.components
                settings.eventLoop.scheduleTask(
                    in: .nanoseconds(delay.seconds * 1_000_000_000 + delay.attoseconds / 1_000_000_000)
                ) { self.jobs.yield(.flushHeld) }
            }
        } catch {
            failed(error, generation)
        }
    }

    private func renew() async {
        guard case let (c, generation)? = control(needingLease: false) else { return }
        do {
            guard try await ClusterSQL.renew(node: node, lease: settings.lease, c, logger) else {
                logger.warning("this node was removed from the cluster (lease ran out): rejoining")
                state.withLockedValue { $0.held.removeAll() }
                return perform(state.withLockedValue { $0.membership.evicted() })
            }
            perform(state.withLockedValue { $0.membership.renewed() })
            let dead = try await ClusterSQL.reap(by: node, c, logger)
            for gone in dead {
                logger.notice("removed node \(gone) from the cluster: its lease ran out")
                // The others hear it on the cluster channel; this node skips its own notifications.
                eventsOut.yield(.message(ClusterEnvelope(origin: node, message: .nodeGone(gone))))
            }
        } catch {
            failed(error, generation)
        }
    }

    /// Sends the held notifications in order while the connection holds. One the database refuses
    /// (it never would take it) is dropped; after a broken connection the rest wait for the next.
    /// A notification whose connection broke after the commit may go out twice (at least once).
    private func sendUnsent() async {
        var sent = 0
        var connected = false
        while true {
            guard case let (c, generation)? = control(needingLease: false) else { break }
            // Just rejoined: what was held waits for `.flushHeld` (and anything newer behind it).
            guard state.withLockedValue({ $0.heldUntil == nil }) else { return }
            connected = true
            let next = state.withLockedValue { s -> Unsent? in
                s.dropExpired()
                return s.unsent.first
            }
            guard let next else { break }
            do {
                try await ClusterSQL.publish(ClusterEnvelope(origin: node, message: next.message), on: next.channel, c, logger)
                state.withLockedValue { $0.removeFirstUnsent() }
                sent += 1
            } catch where ClusterSQL.refusal(error).map(ClusterSQL.isPermanent) == true {
                state.withLockedValue { $0.removeFirstUnsent() }
                failed(error, generation)
            } catch {
                failed(error, generation)
                break
            }
        }
        // Reported once the database is back, not at every notification held meanwhile.
        guard connected else { return }
        let dropped = state.withLockedValue { s -> Int in
            defer { s.droppedUnsent = 0 }
            return s.droppedUnsent
        }
        if dropped > 0 {
            logger.warning("dropped \(dropped) notifications to the other nodes: the database was unreachable too long")
        }
        if sent > 1 { logger.info("sent \(sent) held notifications to the other nodes") }
    }

    /// A statement failed: a database refusal is logged; a broken connection starts a reconnect.
    private func failed(_ error: any Error, _ generation: Int) {
        if ClusterSQL.refusal(error) != nil {
            logger.error("cluster statement refused: \(String(reflecting: error))")
            return
        }
        lostConnection(generation: generation, error)
    }

    // MARK: inbound

    func runInbound() async {
        var catchingUp = false
        var generation = 0
        var held: [String] = []
        for await item in inboundStream {
            switch item {
            case .listening(let g):
                (catchingUp, generation, held) = (true, g, [])
            case .payload(let payload):
                if catchingUp { held.append(payload) } else { await handle(payload) }
            case .caughtUp(let g, let users):
                guard g == generation else { continue }
                eventsOut.yield(.directory(users))
                for payload in held { await handle(payload) }
                (catchingUp, held) = (false, [])
            }
        }
    }

    private func handle(_ payload: String) async {
        guard !ClusterCodec.isOwn(payload, node: node) else { return }
        do {
            var envelope = try ClusterCodec.decode(payload)
            guard envelope.origin != node else { return }
            if case .reference(let id) = envelope.message {
                guard let body = await withCheckedContinuation({ jobs.yield(.resolve(id, $0)) }) else {
                    logger.warning("a cluster notification's payload row \(id) is gone; dropped")
                    return
                }
                envelope = try ClusterCodec.decode(body)
                if case .reference = envelope.message { throw ClusterCodecError("a reference to a reference") }
            }
            eventsOut.yield(.message(envelope))
        } catch {
            logger.error("\(error)")
        }
    }
}
