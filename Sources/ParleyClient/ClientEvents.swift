import ParleyProtocol

/// One thing that happened to a client session, fed to `ClientStateMachine` in the order it happened.
public enum ClientEvent: Sendable, Equatable {
    /// The person (or script) typed a line; it answers the last `.readLine` action.
    case line(String)
    /// Input ended (end of file, or the terminal closed).
    case inputEnded
    /// A frame from the server, in wire order (replies and events alike).
    case frame(ServerMessage)
    /// The server connection ended; nil for an orderly close.
    case connectionClosed(ClientError?)
    /// The connection asked for by `.connectServer` is up (TLS verified, `hello` received).
    case serverConnected
    /// The connection asked for by `.connectServer` could not be made.
    case serverConnectFailed(ClientError)
    /// A timer armed by `.armTimer` went off.
    case timerFired(ClientTimer)
    /// Something happened on the private-session side (a link, a listener, an identity).
    case privateLink(PrivateLinkActivity)
}

/// What a private link, listener or identity reports to the state machine, by attempt.
public enum PrivateLinkActivity: Sendable, Equatable {
    /// The listener for an accepted request is up on `port`; `fingerprint` is our key's (hex).
    case listening(attempt: PrivateAttempt, port: UInt16, fingerprint: String)
    /// The listener (or its identity) could not be set up.
    case listenFailed(attempt: PrivateAttempt, message: String)
    /// A key for `startprivate` could not be made; the request was not sent.
    case identityFailed(attempt: PrivateAttempt, message: String)
    /// The link is open after the safety-code exchange.
    case opened(attempt: PrivateAttempt, safetyCode: String, peerFingerprint: String)
    /// Connecting (our side) or the exchange (either side) failed.
    case failed(attempt: PrivateAttempt, PrivateLinkError)
    /// A frame or the end of an open link.
    case link(attempt: PrivateAttempt, PrivateLinkEvent)
}

/// Names one try at a private session with one peer; events for an attempt that is over are ignored.
public struct PrivateAttempt: Sendable, Hashable, CustomStringConvertible {
    public let number: Int
    public init(_ number: Int) { self.number = number }
    public var description: String { "#\(number)" }
}

/// The timers a session arms; each is a protocol deadline, never a pause.
public enum ClientTimer: Sendable, Hashable {
    /// The reply to request `id` is overdue.
    case reply(id: Int64)
    /// Nobody connected to the listener of `attempt` in time.
    case listen(PrivateAttempt)
    /// The server did not close the connection after answering `logout`.
    case logoutClose
    /// The back-off before the next reconnect attempt is over.
    case reconnect
}

/// What the session loop must do; it carries these out in order and decides nothing itself.
public enum ClientAction: Sendable, Equatable {
    /// Read the next line (`secret`: without echo). At most one read is outstanding.
    case readLine(prompt: String, secret: Bool)
    /// Write a request; `id` nil for those without a reply (`ack`, `active`).
    case send(Request, id: Int64?)
    /// Make a fresh key for `attempt` and send `startprivate` to `user` with its fingerprint as `id`.
    case sendStartPrivate(user: String, attempt: PrivateAttempt, id: Int64)
    /// Make a key for `attempt` and listen for the peer (answers with `.listening` or `.listenFailed`).
    case listen(PrivateAttempt)
    /// Tell the listener of `attempt` what to expect (relayed by the server).
    case expect(PrivateAttempt, PrivatePeerExpectation)
    /// Connect to the peer that accepted `attempt`, presenting its key.
    case connect(PrivateAttempt, host: String, port: Int, expecting: PrivatePeerExpectation)
    /// Write one private message on the open link of `attempt`.
    case sendPrivate(PrivateAttempt, text: String)
    /// Stop listening for `attempt` (its link is open; the id is spent).
    case stopListening(PrivateAttempt)
    /// End whatever `attempt` holds (link, listener, key); a link first says `reason` in a `bye`.
    case closePrivate(PrivateAttempt, reason: String?)
    case show(Output)
    case armTimer(ClientTimer, after: Duration)
    case cancelTimer(ClientTimer)
    /// The names completion offers changed.
    case usersChanged(Set<String>)
    /// Connect to `server` (after a lost connection); answers with `.serverConnected` or `.serverConnectFailed`.
    case connectServer(ServerEndpoint)
    /// Drop the current server connection now (a reconnect attempt that did not log in);
    /// nothing more from it reaches the machine.
    case dropServer
    /// Close the server connection once everything already written has gone out.
    case close
    /// The session is over.
    case exit(ExitStatus)
}

