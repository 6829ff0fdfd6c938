import ParleyCrypto
import Foundation
import ParleyProtocol

/// The private-session peers of one client, by canonical name: who asked whom, who listens,
/// which link is open. Part of `ClientStateMachine`'s value; no I/O.
struct PrivatePeers: Sendable, Equatable {
    enum Phase: Equatable {
        /// We asked; our key (made by the loop for `attempt`) waits for the answer.
        case requesting(PrivateAttempt)
        /// They asked; the prompt is up.
        case prompted
        /// We accepted; the loop listens for `attempt`.
        case listening(PrivateAttempt)
        /// They accepted; the loop connects.
        case connecting(PrivateAttempt)
        case open(PrivateAttempt, safetyCode: String, peerFingerprint: String, bye: String?)

        var attempt: PrivateAttempt? {
            switch self {
            case .requesting(let a), .listening(let a), .connecting(let a), .open(let a, _, _, _): a
            case .prompted: nil
            }
        }
    }

    struct Peer: Equatable {
        var displayName: String
        var phase: Phase
    }

    /// Our name as registered, for the reasons peers are told.
    var me = ""
    var peers: [String: Peer] = [:]
    /// Incoming requests whose prompt waits for a y/n line, oldest first (canonical names).
    var prompts: [String] = []
    var lastAttempt = 0

    mutating func newAttempt() -> PrivateAttempt {
        lastAttempt += 1
        return PrivateAttempt(lastAttempt)
    }

    /// The peer whose current attempt is `attempt`.
    func key(of attempt: PrivateAttempt) -> String? {
        peers.first { $0.value.phase.attempt == attempt }?.key
    }

    /// The reminder to show after a line that does not answer the prompt, if one is up.
    var promptReminder: PrivateNotice? {
        guard let k = prompts.first, let peer = peers[k] else { return nil }
        return .askAgain(from: peer.displayName)
    }

    mutating func forget(_ k: String, ifRequesting attempt: PrivateAttempt) -> Bool {
        guard case .requesting(attempt)? = peers[k]?.phase else { return false }
        peers[k] = nil
        return true
    }

    mutating func forget(_ k: String, ifListening attempt: PrivateAttempt) -> Bool {
        guard case .listening(attempt)? = peers[k]?.phase else { return false }
        peers[k] = nil
        return true
    }
}

func canonical(_ name: String) -> String { Validation.canonicalUsername(name) }

extension ClientStateMachine {
    private static let noReplyText = "Error. The server did not answer in time"

    // MARK: typed

    /// `startprivate`, `private`, `stopprivate`, `verify`: none waits for the server.
    mutating func runPrivate(_ command: UserCommand, _ out: inout Actions) {
        switch command {
        case .startPrivate(let user):
            guard isOnline else { return inOrder(.local(.connection(.notConnected(command: command.name))), &out) }
            let k = canonical(user)
            if privates.peers[k] != nil {
                return notice(.failure(code: "private_already_active", message: ErrorCode.privateAlreadyActive.defaultMessage), &out)
            }
            let attempt = privates.newAttempt()
            // Recorded before asking: the answer may arrive before the reply.
            privates.peers[k] = PrivatePeers.Peer(displayName: user, phase: .requesting(attempt))
            let id = nextRequestID()
            pending[id] = .startPrivate(key: k, attempt: attempt)
            barriers.append(id)
            // The deadline first: if the key cannot be made, `identityFailed` cancels it at once.
            out.append(.armTimer(.reply(id: id), after: configuration.replyTimeout))
            out.append(.sendStartPrivate(user: user, attempt: attempt, id: id))
        case .privateMessage(let user, let text):
            guard case .open(let attempt, _, _, _)? = privates.peers[canonical(user)]?.phase else { return notEnabled(user, &out) }
            guard Validation.isValidText(text) else {
                return notice(.failure(code: "bad_frame", message: "Error. Message must be 1 to 4096 bytes"), &out)
            }
            // Straight onto the link, whatever the server is doing; the server only hears that we
            // were active (its idle timer), never the text.
            out.append(.sendPrivate(attempt, text: text))
            if isOnline { out.append(.send(.active, id: nil)) }
            notice(.sent(to: user), &out)
        case .stopPrivate(let user):
            let k = canonical(user)
            guard let peer = privates.peers.removeValue(forKey: k) else { return notEnabled(user, &out) }
            privates.prompts.removeAll { $0 == k }
            // The server is told in the same breath as the peer; its reply changes nothing (the
            // peer may have stopped first), so nobody waits for it.
            _ = request(.stopPrivate(user: peer.displayName), .quiet, &out)
            close(peer.phase, reason: "\(privates.me) stopped private messaging", &out)
            notice(.stopped(user: peer.displayName), &out)
        case .verify(let user):
            guard let peer = privates.peers[canonical(user)], case .open(_, let code, let fingerprint, _) = peer.phase else {
                return notEnabled(user, &out)
            }
            notice(.verify(user: peer.displayName, safetyCode: code, fingerprint: fingerprint), &out)
        default:
            return
        }
    }

    /// Answers the oldest prompt; false when `line` is not y or n (then it runs as a command).
    mutating func answer(_ line: String, _ out: inout Actions) -> Bool {
        guard let k = privates.prompts.first, let peer = privates.peers[k] else { return false }
        switch line.trimmingCharacters(in: .whitespaces).lowercased() {
        case "y", "yes":
            privates.prompts.removeFirst()
            let attempt = privates.newAttempt()
            privates.peers[k] = PrivatePeers.Peer(displayName: peer.displayName, phase: .listening(attempt))
            out.append(.listen(attempt))
        case "n", "no":
            privates.prompts.removeFirst()
            privates.peers[k] = nil
            _ = request(.privateAnswer(user: peer.displayName, accept: false, port: nil, fingerprint: nil), .quiet, &out)
        default:
            return false
        }
        return true
    }

    private mutating func notEnabled(_ user: String, _ out: inout Actions) {
        notice(.failure(code: "private_not_enabled", message: "Error. Private messaging to \(user) not enabled"), &out)
    }

    /// A notice caused by a typed line: in order behind earlier commands.
    private mutating func notice(_ notice: PrivateNotice, _ out: inout Actions) {
        inOrder(.local(.privateChat(notice)), &out)
    }

    /// A notice caused by the server or a link: shown as it happens.
    private func event(_ notice: PrivateNotice, _ out: inout Actions) {
        out.append(.show(.local(.privateChat(notice))))
    }

    func close(_ phase: PrivatePeers.Phase, reason: String?, _ out: inout Actions) {
        guard let attempt = phase.attempt else { return }
        if case .open = phase { return out.append(.closePrivate(attempt, reason: reason)) }
        out.append(.closePrivate(attempt, reason: nil))
    }

    /// Ends the session with `user`, if any, as the server would on a block (it may not know of
    /// a session that outlived a reconnect, so the client does not wait to be told).
    mutating func endPrivate(with user: String, reason: String, _ out: inout Actions) {
        let k = canonical(user)
        guard let peer = privates.peers.removeValue(forKey: k) else { return }
        privates.prompts.removeAll { $0 == k }
        close(peer.phase, reason: reason, &out)
        event(.ended(user: peer.displayName, reason: reason), &out)
    }

    /// Ends every private session, telling each peer why (logout, timeout, end of input).
    mutating func closeAllPrivate(reason: String, _ out: inout Actions) {
        for k in privates.peers.keys.sorted() {
            close(privates.peers[k]!.phase, reason: "\(privates.me) \(reason)", &out)
        }
        privates.peers = [:]
        privates.prompts = []
    }

    // MARK: replies

    mutating func startReplied(_ reply: Reply, key k: String, attempt: PrivateAttempt, _ out: inout Actions) {
        guard case .error(let code, let message) = reply.outcome else { return }
        if privates.forget(k, ifRequesting: attempt) { out.append(.closePrivate(attempt, reason: nil)) }
        out.append(.show(.local(.privateChat(.failure(code: code.rawValue, message: Presenter.errorText(code: code, serverMessage: message))))))
    }

    mutating func acceptReplied(_ reply: Reply, key k: String, attempt: PrivateAttempt, _ out: inout Actions) {
        if case .ok = reply.outcome {
            // Nobody connecting in time ends it, so the port does not stay open.
            if case .listening(attempt)? = privates.peers[k]?.phase {
                out.append(.armTimer(.listen(attempt), after: configuration.listenTimeout))
            }
            return
        }
        out.append(.closePrivate(attempt, reason: nil))
        _ = privates.forget(k, ifListening: attempt)
        if case .error(let code, let message) = reply.outcome {
            event(.failure(code: code.rawValue, message: Presenter.errorText(code: code, serverMessage: message)), &out)
        }
    }

    mutating func listenTimedOut(_ attempt: PrivateAttempt, _ out: inout Actions) {
        guard let k = privates.key(of: attempt), case .listening? = privates.peers[k]?.phase,
            let peer = privates.peers.removeValue(forKey: k)
        else { return }
        out.append(.closePrivate(attempt, reason: nil))
        _ = request(.stopPrivate(user: peer.displayName), .quiet, &out)
        event(.ended(user: peer.displayName, reason: "\(peer.displayName) did not connect in time"), &out)
    }

    // MARK: server events

    /// Handles a private-session event from the server; false for any other frame.
    mutating func privateEvent(_ frame: ServerMessage, _ out: inout Actions) -> Bool {
        switch frame {
        case .privateRequest, .privateDeclined, .privateAccepted, .privateStarted, .privateStopped: break
        default: return false
        }
        guard case .online = phase else { return true }  // logging out: every session is closed
        switch frame {
        case .privateRequest(let from):
            let k = canonical(from)
            guard privates.peers[k] == nil else {
                // Both asked at once: the server refuses the second request, so this cannot pair up.
                _ = request(.privateAnswer(user: from, accept: false, port: nil, fingerprint: nil), .quiet, &out)
                return true
            }
            privates.peers[k] = PrivatePeers.Peer(displayName: from, phase: .prompted)
            privates.prompts.append(k)
            event(.request(from: from), &out)
        case .privateDeclined(let user):
            let k = canonical(user)
            guard case .requesting(let attempt)? = privates.peers[k]?.phase else { return true }
            privates.peers[k] = nil
            out.append(.closePrivate(attempt, reason: nil))
            event(.declined(user: user), &out)
        case .privateAccepted(let user, let host, let port, let fingerprint, let linkID):
            let k = canonical(user)
            guard case .requesting(let attempt)? = privates.peers[k]?.phase, let pin = Hex.decode(fingerprint) else { return true }
            privates.peers[k]?.phase = .connecting(attempt)
            out.append(.connect(attempt, host: host, port: Int(port), expecting: PrivatePeerExpectation(fingerprint: pin, linkID: linkID)))
        case .privateStarted(let user, let fingerprint, let linkID):
            guard case .listening(let attempt)? = privates.peers[canonical(user)]?.phase, let pin = Hex.decode(fingerprint) else {
                return true
            }
            out.append(.expect(attempt, PrivatePeerExpectation(fingerprint: pin, linkID: linkID)))
        case .privateStopped(let user, let reason):
            let k = canonical(user)
            privates.prompts.removeAll { $0 == k }
            guard let peer = privates.peers.removeValue(forKey: k) else { return true }
            // Pass the server's reason on in the link's bye: whichever reaches the peer first
            // (this bye or the server's own notice), it shows the same reason.
            close(peer.phase, reason: reason, &out)
            event(.ended(user: peer.displayName, reason: reason), &out)
        default:
            return false
        }
        return true
    }

    // MARK: links

    mutating func privateActivity(_ activity: PrivateLinkActivity, _ out: inout Actions) {
        switch activity {
        case .listening(let attempt, let port, let fingerprint):
            guard let k = privates.key(of: attempt), let peer = privates.peers[k], case .listening = peer.phase else {
                return out.append(.closePrivate(attempt, reason: nil))
            }
            let answer = Request.privateAnswer(user: peer.displayName, accept: true, port: port, fingerprint: fingerprint)
            _ = request(answer, .acceptPrivate(key: k, attempt: attempt), &out)
        case .listenFailed(let attempt, let message):
            guard let k = privates.key(of: attempt), let peer = privates.peers.removeValue(forKey: k) else { return }
            event(.failure(code: "private_listen_failed", message: "Error. Cannot accept private messaging: \(message)"), &out)
            _ = request(.privateAnswer(user: peer.displayName, accept: false, port: nil, fingerprint: nil), .quiet, &out)
        case .identityFailed(let attempt, let message):
            // The request never left: drop its bookkeeping and say why, in its turn.
            let match = pending.first { entry in
                if case .startPrivate(_, attempt) = entry.value { true } else { false }
            }
            guard let id = match?.key else { return }
            pending[id] = nil
            out.append(.cancelTimer(.reply(id: id)))
            if let k = privates.key(of: attempt) { privates.peers[k] = nil }
            held[id, default: []].insert(.local(.privateChat(.failure(code: "tls_configuration", message: "Error. \(message)"))), at: 0)
            release(id, &out)
        case .opened(let attempt, let code, let fingerprint):
            opened(attempt, code: code, fingerprint: fingerprint, &out)
        case .failed(let attempt, let error):
            failed(attempt, error, &out)
        case .link(let attempt, let linkEvent):
            linked(attempt, linkEvent, &out)
        }
    }

    private mutating func opened(_ attempt: PrivateAttempt, code: String, fingerprint: String, _ out: inout Actions) {
        guard let k = privates.key(of: attempt), let peer = privates.peers[k] else {
            return out.append(.closePrivate(attempt, reason: nil))
        }
        switch peer.phase {
        case .connecting:
            event(.accepted(user: peer.displayName), &out)
        case .listening:
            out.append(.stopListening(attempt))  // one session per id: stop listening at once
            out.append(.cancelTimer(.listen(attempt)))
        default:
            return out.append(.closePrivate(attempt, reason: nil))
        }
        privates.peers[k]?.phase = .open(attempt, safetyCode: code, peerFingerprint: fingerprint, bye: nil)
        event(.started(user: peer.displayName, safetyCode: code), &out)
    }

    private mutating func failed(_ attempt: PrivateAttempt, _ error: PrivateLinkError, _ out: inout Actions) {
        guard let k = privates.key(of: attempt), let peer = privates.peers[k] else { return }
        switch peer.phase {
        case .connecting:
            if error.isExchangeFailure {
                event(.aborted(user: peer.displayName, reason: error.description, code: error.code), &out)
            } else {
                event(.failure(code: "private_connect_failed", message: "Error. Private connection to \(peer.displayName) failed: \(error)"), &out)
            }
        case .listening:
            // The accepting side's exchange failed after the session id was spent: nobody else
            // can connect, so the attempt is over.
            out.append(.cancelTimer(.listen(attempt)))
            event(.aborted(user: peer.displayName, reason: error.description, code: error.code), &out)
        default:
            return
        }
        privates.peers[k] = nil
        out.append(.closePrivate(attempt, reason: nil))
        _ = request(.stopPrivate(user: peer.displayName), .quiet, &out)
    }

    private mutating func linked(_ attempt: PrivateAttempt, _ linkEvent: PrivateLinkEvent, _ out: inout Actions) {
        guard let k = privates.key(of: attempt), let peer = privates.peers[k],
            case .open(_, let code, let fingerprint, let bye) = peer.phase
        else { return }
        switch linkEvent {
        case .text(let text):
            event(.message(from: peer.displayName, text: text), &out)
        case .bye(let reason):
            privates.peers[k]?.phase = .open(attempt, safetyCode: code, peerFingerprint: fingerprint, bye: reason)
        case .closed(let error):
            privates.peers[k] = nil
            let why = bye ?? (error == nil ? "\(peer.displayName) closed the connection" : "connection to \(peer.displayName) lost")
            event(.ended(user: peer.displayName, reason: why), &out)
            out.append(.closePrivate(attempt, reason: nil))
            // Keep the server's view in step (it refuses quietly if the peer already stopped).
            _ = request(.stopPrivate(user: peer.displayName), .quiet, &out)
        }
    }
}
