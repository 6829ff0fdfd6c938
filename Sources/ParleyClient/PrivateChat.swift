import NIOCore
import ParleyCrypto
import ParleyProtocol
import ParleyTLS

/// The client's private sessions: asks and answers through the server, then talks to the other
/// user over a direct, mutually pinned TLS 1.3 connection. Keys live in memory only and are
/// dropped with the session. An actor: the command loop, the event pump and the links all call in.
public actor PrivateChat {
    private enum Phase {
        /// We asked; our identity waits for the answer.
        case requesting(TLSIdentity)
        /// They asked; the prompt is up.
        case prompted
        /// We accepted and listen; waiting for the server's go-ahead and their connection.
        case listening(PrivateListener)
        /// They accepted; we are connecting.
        case connecting
        case open(PrivateLink)
    }

    private struct Peer {
        var displayName: String
        var phase: Phase
    }

    private let connection: ChatConnection
    private let output: OutputSink
    private let format: OutputFormat
    private let bindHost: String
    private let connectTimeout: TimeAmount
    private var me = ""
    private var peers: [String: Peer] = [:]
    /// Incoming requests whose prompt waits for a y/n line, oldest first (canonical names).
    private var prompts: [String] = []
    /// A line that was not y/n ran as a command while a prompt was up: recall the prompt after it.
    private var remindPending = false

    public init(
        connection: ChatConnection, output: OutputSink, format: OutputFormat, bindHost: String? = nil,
        connectTimeout: TimeAmount = .seconds(10)
    ) {
        self.connection = connection
        self.output = output
        self.format = format
        // The listener binds to the address this client reaches the server from: the address the
        // server sees and relays (unless a NAT is in the way), and no wider than that.
        self.bindHost = bindHost ?? connection.localHost ?? "127.0.0.1"
        self.connectTimeout = connectTimeout
    }

    public func loggedIn(as name: String) { me = name }

    private func show(_ notice: PrivateNotice) {
        let lines = Presenter.render(.local(.privateChat(notice)), format: format)
        if !lines.isEmpty { output.emit(lines) }
    }

    private func key(_ name: String) -> String { Validation.canonicalUsername(name) }

    // MARK: commands

    /// Runs `startprivate`, `private`, `stopprivate` or `verify`.
    public func run(_ command: UserCommand) async {
        switch command {
        case .startPrivate(let user): await start(user)
        case .privateMessage(let user, let text): await send(text, to: user)
        case .stopPrivate(let user): await stop(user)
        case .verify(let user):
            guard case .open(let link)? = peers[key(user)]?.phase else { return notEnabled(user) }
            show(.verify(user: peers[key(user)]!.displayName, safetyCode: link.safetyCode, fingerprint: hex(link.peerFingerprint)))
        default: return
        }
    }

    private func notEnabled(_ user: String) {
        show(.failure(code: "private_not_enabled", message: "Error. Private messaging to \(user) not enabled"))
    }

    private func start(_ user: String) async {
        let k = key(user)
        if peers[k] != nil {
            return show(.failure(code: "private_already_active", message: ErrorCode.privateAlreadyActive.defaultMessage))
        }
        let identity: TLSIdentity
        do { identity = try CertificateFactory.make(commonName: "parley private", kind: .peer, notAfter: 3600) } catch {
            return show(.failure(code: "tls_configuration", message: "Error. \(error)"))
        }
        // Recorded before asking: the answer may arrive before the reply.
        peers[k] = Peer(displayName: user, phase: .requesting(identity))
        let reply = try? await connection.send(.startPrivate(user: user, fingerprint: hex(identity.fingerprint)), timeout: .seconds(10))
        guard let reply else {
            forget(k, ifRequesting: true)
            return show(.failure(code: "no_reply", message: "Error. The server did not answer in time"))
        }
        if case .error(let code, let message) = reply.outcome {
            forget(k, ifRequesting: true)
            show(.failure(code: code.rawValue, message: Presenter.errorText(code: code, serverMessage: message)))
        }
    }

    private func forget(_ k: String, ifRequesting: Bool) {
        if case .requesting? = peers[k]?.phase { peers[k] = nil }
    }

    private func send(_ text: String, to user: String) async {
        guard case .open(let link)? = peers[key(user)]?.phase else { return notEnabled(user) }
        guard Validation.isValidText(text) else {
            return show(.failure(code: "bad_frame", message: "Error. Message must be 1 to 4096 bytes"))
        }
        do { try await link.send(text) } catch { return notEnabled(user) }
        show(.sent(to: user))
        // The server never sees the text, only that we were active (idle timer).
        try? await connection.sendWithoutReply(.active)
    }

    private func stop(_ user: String) async {
        let k = key(user)
        guard let peer = peers.removeValue(forKey: k) else { return notEnabled(user) }
        prompts.removeAll { $0 == k }
        // The server first, so when the peer sees our close the server has already forgotten the pair.
        _ = try? await connection.send(.stopPrivate(user: peer.displayName), timeout: .seconds(10))
        await close(peer.phase, reason: "\(me) stopped private messaging")
        show(.stopped(user: peer.displayName))
    }

    private func close(_ phase: Phase, reason: String?) async {
        switch phase {
        case .open(let link): await link.close(reason: reason)
        case .listening(let listener): listener.close()
        case .requesting, .prompted, .connecting: break
        }
    }

    /// Ends every session, telling each peer why (logout, timeout, end of input).
    public func closeAll(reason: String) async {
        let all = peers
        peers = [:]
        prompts = []
        for peer in all.values { await close(peer.phase, reason: "\(me) \(reason)") }
    }

    // MARK: the y/n prompt

    /// Whether a prompt is waiting for a y/n line.
    public var isPrompting: Bool { !prompts.isEmpty }

    /// Answers the oldest prompt with `line`; false when no prompt is up or the line is not y/n
    /// (then it is a command, and the prompt stays up).
    public func answer(_ line: String) async -> Bool {
        guard let k = prompts.first, let peer = peers[k] else { return false }
        switch line.trimmingCharacters(in: .whitespaces).lowercased() {
        case "y", "yes":
            prompts.removeFirst()
            await accept(k, peer.displayName)
        case "n", "no":
            prompts.removeFirst()
            peers[k] = nil
            _ = try? await connection.send(.privateAnswer(user: peer.displayName, accept: false, port: nil, fingerprint: nil), timeout: .seconds(10))
        default:
            // Swallowing it would leave the user unable to do anything else until they answer.
            remindPending = true
            return false
        }
        return true
    }

    /// Shows the pending prompt again if a command ran while it was up; called once that
    /// command's output is shown, so the reminder comes last.
    public func remindIfPrompting() {
        guard remindPending else { return }
        remindPending = false
        guard let k = prompts.first, let peer = peers[k] else { return }
        show(.askAgain(from: peer.displayName))
    }

    private func accept(_ k: String, _ name: String) async {
        let listener: PrivateListener
        let identity: TLSIdentity
        do {
            identity = try CertificateFactory.make(commonName: "parley private", kind: .peer, notAfter: 3600)
            listener = try await PrivateListener.open(
                identity: identity, host: bindHost, handshakeTimeout: connectTimeout,
                onOpen: { link in Task { await self.opened(k, link) } },
                onAbort: { error in Task { await self.aborted(k, error) } })
        } catch {
            peers[k] = nil
            show(.failure(code: "private_listen_failed", message: "Error. Cannot accept private messaging: \(error)"))
            _ = try? await connection.send(.privateAnswer(user: name, accept: false, port: nil, fingerprint: nil), timeout: .seconds(10))
            return
        }
        peers[k] = Peer(displayName: name, phase: .listening(listener))
        let answer = Request.privateAnswer(user: name, accept: true, port: UInt16(listener.port), fingerprint: hex(identity.fingerprint))
        let reply = try? await connection.send(answer, timeout: .seconds(10))
        if case .ok? = reply?.outcome {
            // Nobody connecting in time ends it, so the port does not stay open.
            Task {
                try? await Task.sleep(for: .seconds(connectTimeout.seconds * 3))
                await self.listenTimedOut(k, listener)
            }
            return
        }
        listener.close()
        if case .listening? = peers[k]?.phase { peers[k] = nil }
        if case .error(let code, let message)? = reply?.outcome {
            show(.failure(code: code.rawValue, message: Presenter.errorText(code: code, serverMessage: message)))
        }
    }

    private func listenTimedOut(_ k: String, _ listener: PrivateListener) async {
        guard case .listening(let current)? = peers[k]?.phase, current === listener, let peer = peers.removeValue(forKey: k) else { return }
        listener.close()
        _ = try? await connection.send(.stopPrivate(user: peer.displayName), timeout: .seconds(10))
        show(.ended(user: peer.displayName, reason: "\(peer.displayName) did not connect in time"))
    }

    // MARK: server events

    /// Handles a private-session event; false for any other event.
    public func handle(_ event: ServerMessage) async -> Bool {
        switch event {
        case .privateRequest(let from):
            let k = key(from)
            guard peers[k] == nil else {
                // Both asked at once: the server refuses the second request, so this cannot pair up.
                _ = try? await connection.send(.privateAnswer(user: from, accept: false, port: nil, fingerprint: nil), timeout: .seconds(10))
                return true
            }
            peers[k] = Peer(displayName: from, phase: .prompted)
            prompts.append(k)
            show(.request(from: from))
        case .privateDeclined(let user):
            guard case .requesting? = peers[key(user)]?.phase else { return true }
            peers[key(user)] = nil
            show(.declined(user: user))
        case .privateAccepted(let user, let host, let port, let fingerprint, let session):
            let k = key(user)
            guard case .requesting(let identity)? = peers[k]?.phase, let pin = unhex(fingerprint) else { return true }
            peers[k] = Peer(displayName: user, phase: .connecting)
            let expected = PrivatePeerExpectation(fingerprint: pin, session: session)
            let timeout = connectTimeout
            // Not awaited: the event pump keeps going while we connect.
            Task {
                do {
                    let link = try await PrivateLink.connect(host: host, port: Int(port), identity: identity, expecting: expected, timeout: timeout)
                    await self.opened(k, link)
                } catch {
                    await self.connectFailed(k, error as? PrivateLinkError ?? .refused)
                }
            }
        case .privateStarted(let user, let fingerprint, let session):
            guard case .listening(let listener)? = peers[key(user)]?.phase, let pin = unhex(fingerprint) else { return true }
            listener.expect(PrivatePeerExpectation(fingerprint: pin, session: session))
        case .privateStopped(let user, let reason):
            let k = key(user)
            prompts.removeAll { $0 == k }
            guard let peer = peers.removeValue(forKey: k) else { return true }
            // Pass the server's reason on in the link's bye: whichever reaches the peer first
            // (this bye or the server's own notice), it shows the same reason.
            await close(peer.phase, reason: reason)
            show(.ended(user: peer.displayName, reason: reason))
        default:
            return false
        }
        return true
    }

    // MARK: links

    private func opened(_ k: String, _ link: PrivateLink) async {
        guard let peer = peers[k] else { return await link.close(reason: nil) }
        switch peer.phase {
        case .connecting:
            show(.accepted(user: peer.displayName))
        case .listening(let listener):
            listener.close()  // one session per id: stop listening at once
        default:
            return await link.close(reason: nil)
        }
        peers[k] = Peer(displayName: peer.displayName, phase: .open(link))
        show(.started(user: peer.displayName, safetyCode: link.safetyCode))
        Task { await self.read(k, link) }
    }

    private func connectFailed(_ k: String, _ error: PrivateLinkError) async {
        guard case .connecting? = peers[k]?.phase, let peer = peers.removeValue(forKey: k) else { return }
        if error.isExchangeFailure {
            show(.aborted(user: peer.displayName, reason: error.description, code: error.code))
        } else {
            show(.failure(code: "private_connect_failed", message: "Error. Private connection to \(peer.displayName) failed: \(error)"))
        }
        _ = try? await connection.send(.stopPrivate(user: peer.displayName), timeout: .seconds(10))
    }

    /// The accepting side's exchange failed after the session id was spent: nobody else can
    /// connect, so the attempt is over.
    private func aborted(_ k: String, _ error: PrivateLinkError) async {
        guard case .listening(let listener)? = peers[k]?.phase, let peer = peers.removeValue(forKey: k) else { return }
        listener.close()
        show(.aborted(user: peer.displayName, reason: error.description, code: error.code))
        _ = try? await connection.send(.stopPrivate(user: peer.displayName), timeout: .seconds(10))
    }

    private func read(_ k: String, _ link: PrivateLink) async {
        var reason: String?
        for await event in link.events {
            switch event {
            case .text(let text):
                if let name = peers[k]?.displayName { show(.message(from: name, text: text)) }
            case .bye(let why): reason = why
            case .closed(let error):
                guard case .open(let current)? = peers[k]?.phase, current === link, let peer = peers.removeValue(forKey: k) else { return }
                let why = reason ?? (error == nil ? "\(peer.displayName) closed the connection" : "connection to \(peer.displayName) lost")
                show(.ended(user: peer.displayName, reason: why))
                // Keep the server's view in step (it refuses quietly if the peer already stopped).
                _ = try? await connection.send(.stopPrivate(user: peer.displayName), timeout: .seconds(10))
            }
        }
    }
}

/// Lowercase hex, as fingerprints travel in the protocol.
func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

func unhex(_ text: String) -> [UInt8]? { Hex.decode(text) }

extension TimeAmount {
    var seconds: Double { Double(nanoseconds) / 1_000_000_000 }
}
