import NIOCore
import ParleyProtocol
import ParleyProtocolNIO

/// One connection's protocol rules, without I/O: the phase, the order requests take effect in,
/// read suppression, bad-frame counting, unacked stored messages and the connection's one timer.
/// The handler feeds it events and carries out the action each returns (the shape of
/// postgres-nio's `ConnectionStateMachine`). Stored inline in the handler: no allocation of its own
/// until a request has to wait.
struct ConnectionStateMachine<Clock: ConnectionClock> {
    /// A frame as the machine sees it: a decoded request, or why it could not be decoded.
    enum Inbound: Equatable {
        case request(Request, id: Int64?)
        case malformed(ProtocolError)

        init(_ frame: Frame, maxFrameBytes: Int) {
            switch frame {
            case .tooLarge:
                self = .malformed(ProtocolError(.frameTooLarge, "frame larger than \(maxFrameBytes) bytes"))
            case .line(let line):
                do {
                    let (id, request) = try Request.decode(from: line)
                    self = .request(request, id: id)
                } catch {
                    self = .malformed(error)
                }
            }
        }
    }

    /// A request that passed the connection's checks, for the handler to carry out.
    enum Command: Equatable {
        case login(username: String, password: String)
        /// `to` is canonical, valid, and not the sender; `text` is valid.
        case message(to: String, text: String)
        case broadcast(text: String)
        case whoelse
        case whoelsesince(seconds: Int64)
        /// `user` is canonical, valid, and not the sender.
        case setBlock(user: String, active: Bool)
        /// `user` is whose stored message it is (still known after a logout).
        case acknowledge(delivery: Int64, user: String)
        /// `passwd` by the logged-in `user`; the passwords are checked by the service.
        case changePassword(user: String, old: String, new: String)
        /// `startprivate`, `privateanswer` or `stopprivate`, checked by the private-session code.
        case privateLink(Request)
    }

    /// What the handler must do next.
    enum Action: Equatable {
        case none
        /// Read from the socket again (it was suppressed while the queue was full).
        case resumeReading
        case reply(Reply)
        /// Carry out a command; one that needs the store or hasher reports `taskStarted`.
        case run(Command, id: Int64?)
        /// Reply ok, send `loggedout`, end the session; then close, or wait for acks until `linger`.
        case logOut(id: Int64?, linger: NIODeadline?)
        /// (Re)arm the connection's timer; `timerFired` is the event when it goes off.
        case arm(NIODeadline)
        /// End the session if there is one, tell the client if the reason says so, close.
        case close(EndReason)
    }

    enum Phase: Equatable {
        /// Hello sent, no login yet; closed at `deadline`.
        case greeting(deadline: NIODeadline)
        /// A login is being checked; the same deadline still holds.
        case loggingIn(deadline: NIODeadline)
        /// Logged in as `name`; logged out when idle past `lastActivity` + the idle timeout.
        case online(name: String, lastActivity: NIODeadline)
        /// `name` logged out; waiting (until `deadline`) for acks of stored messages already sent.
        case closing(name: String, deadline: NIODeadline)
        case closed
    }

    /// Requests waiting while an earlier one runs; past this the socket is no longer read.
    static var maxQueued: Int { 32 }
    /// How long a logout waits for acks of stored messages already sent.
    static var ackWait: TimeAmount { .seconds(2) }

    private(set) var phase: Phase
    private let clock: Clock
    private let idleTimeout: TimeAmount
    private let loginTimeout: TimeAmount
    private let maxBadFramesInARow: Int
    /// A task (store or hasher) is under way: later requests wait, so they take effect in order.
    private(set) var busy = false
    /// Frames read while busy, oldest at `queueHead` (an array: no allocation until one waits).
    private var queue: [Inbound] = []
    private var queueHead = 0
    private(set) var readSuppressed = false
    private var badFramesInARow = 0
    /// Stored messages sent and not acked yet.
    private(set) var unacked: Set<Int64> = []
    /// Commands this connection may send now (nil: no limit); refused ones get `rate_limited`.
    private var commands: TokenBucket?
    private let flood: (refusals: Int, window: TimeAmount)
    /// Refusals since `floodWindowStart`; `flood.refusals` of them within the window end the session.
    private var floodRefusals = 0
    private var floodWindowStart = NIODeadline.uptimeNanoseconds(0)

    init(clock: Clock, idleTimeout: TimeAmount, loginTimeout: TimeAmount, maxBadFramesInARow: Int,
         commandRate: CommandRate? = nil) {
        self.clock = clock
        self.idleTimeout = idleTimeout
        self.loginTimeout = loginTimeout
        self.maxBadFramesInARow = maxBadFramesInARow
        let now = clock.now
        self.phase = .greeting(deadline: now + loginTimeout)
        self.commands = commandRate.map { TokenBucket(capacity: Double($0.burst), perSecond: $0.perSecond, now: now) }
        self.flood = (max(1, commandRate?.floodRefusals ?? 1), commandRate?.floodWindow ?? .seconds(1))
    }

    var queued: Int { queue.count - queueHead }

    var isClosed: Bool { phase == .closed }

    // MARK: events

    /// The connection is up (the handler sends hello): the login deadline starts now.
    mutating func connected() -> Action {
        let deadline = clock.now + loginTimeout
        phase = .greeting(deadline: deadline)
        return .arm(deadline)
    }

    /// A frame arrived: handled now, or queued behind the request under way.
    mutating func received(_ inbound: Inbound) -> Action {
        if isClosed { return .none }
        if busy || queued > 0 {
            queue.append(inbound)
            return .none
        }
        return process(inbound)
    }

    /// The socket may be read; false (and reading stays off until the queue drains) when full.
    mutating func mayRead() -> Bool {
        if queued >= Self.maxQueued {
            readSuppressed = true
            return false
        }
        return true
    }

    /// The handler started a task for the current request.
    mutating func taskStarted() {
        busy = true
    }

    /// The task ended; false when its outcome must be dropped (the connection is closed).
    mutating func taskFinished() -> Bool {
        busy = false
        return !isClosed
    }

    /// The next thing to do after a task's outcome was applied: a queued request, resuming reads,
    /// or nil when there is nothing until the next event.
    mutating func nextAction() -> Action? {
        if !busy, !isClosed, queued > 0 {
            let inbound = queue[queueHead]
            queueHead += 1
            if queueHead == queue.count {
                queue.removeAll(keepingCapacity: true)
                queueHead = 0
            }
            return process(inbound)
        }
        if readSuppressed, !isClosed, queued < Self.maxQueued {
            readSuppressed = false
            return .resumeReading
        }
        return nil
    }

    /// The login ended: online as `name`, or back to waiting for a login (nil).
    mutating func loginFinished(as name: String?) -> Action {
        guard case .loggingIn(let deadline) = phase else { return .none }
        guard let name else {
            phase = .greeting(deadline: deadline)
            return .none
        }
        let now = clock.now
        phase = .online(name: name, lastActivity: now)
        return .arm(now + idleTimeout)
    }

    /// A stored message went out and waits for its ack.
    mutating func storedMessageSent(_ delivery: Int64) {
        unacked.insert(delivery)
    }

    /// The store has settled an ack; after a logout the last one closes the connection.
    mutating func acknowledged(_ delivery: Int64) -> Action {
        unacked.remove(delivery)
        guard case .closing = phase, unacked.isEmpty else { return .none }
        phase = .closed
        return .close(.acksSettled)
    }

    /// The connection's timer went off.
    mutating func timerFired() -> Action {
        let now = clock.now
        switch phase {
        case .closed:
            return .none
        case .greeting(let deadline), .loggingIn(let deadline):
            return expire(at: deadline, now: now, reason: .loginDeadline)
        case .online(_, let lastActivity):
            // Armed once per idle period, not per request: a request only moves `lastActivity`.
            return expire(at: lastActivity + idleTimeout, now: now, reason: .idle)
        case .closing(_, let deadline):
            return expire(at: deadline, now: now, reason: .acksSettled)
        }
    }

    /// The client stopped reading while logged in.
    mutating func slowConsumer() -> Action {
        guard case .online = phase else { return .none }
        phase = .closed
        return .close(.slowConsumer)
    }

    /// The operator ends the session (`.kicked` or `.disabled`); nothing unless logged in. A
    /// user lingering for acks after their own logout is closed at once: unacked messages stay stored.
    mutating func endedByOperator(_ reason: EndReason) -> Action {
        switch phase {
        case .online, .closing:
            phase = .closed
            return .close(reason)
        case .greeting, .loggingIn, .closed:
            return .none
        }
    }

    /// How long the user has sent nothing (nil unless logged in), for the operator's `who`.
    var idleTime: TimeAmount? {
        guard case .online(_, let lastActivity) = phase else { return nil }
        return clock.now - lastActivity
    }

    /// A password check of this session's user found the name locked: the session ends.
    mutating func accountLocked() -> Action {
        guard case .online = phase else { return .none }
        phase = .closed
        return .close(.accountLocked)
    }

    /// The server refuses new work (shutting down).
    mutating func serverStopping() -> Action {
        if isClosed { return .none }
        phase = .closed
        return .close(.serverStopping)
    }

    /// The channel is gone: nothing more is done for it.
    mutating func channelClosed() {
        phase = .closed
        queue = []
        queueHead = 0
    }

    // MARK: requests

    private mutating func expire(at deadline: NIODeadline, now: NIODeadline, reason: EndReason) -> Action {
        guard now >= deadline else { return .arm(deadline) }
        phase = .closed
        return .close(reason)
    }

    private mutating func process(_ inbound: Inbound) -> Action {
        switch inbound {
        case .malformed(let error):
            badFramesInARow += 1
            if badFramesInARow >= maxBadFramesInARow {
                phase = .closed
                return .close(.badFrames(error.code))
            }
            return .reply(.error(error))
        case .request(let request, let id):
            badFramesInARow = 0
            if let refusal = rateLimit(request, id: id) { return refusal }
            return handle(request, id: id)
        }
    }

    /// Spends a token for `request`, or refuses it; a client that keeps going after
    /// `flood.refusals` refusals within `flood.window` is logged out. Acks are never refused:
    /// they answer what the server sent (a login can bring a thousand stored messages).
    private mutating func rateLimit(_ request: Request, id: Int64?) -> Action? {
        guard commands != nil else { return nil }
        if case .ack = request { return nil }
        switch phase {
        case .greeting, .online: break
        case .loggingIn, .closing, .closed: return nil
        }
        let now = clock.now
        guard !commands!.take(now: now) else { return nil }
        if now - floodWindowStart > flood.window {
            floodWindowStart = now
            floodRefusals = 0
        }
        floodRefusals += 1
        if floodRefusals >= flood.refusals {
            phase = .closed
            return .close(.flooding)
        }
        return .reply(.error(id: id, .rateLimited, message: Self.slowDown))
    }

    static var slowDown: String { "Error. Too many commands, slow down" }

    private mutating func handle(_ request: Request, id: Int64?) -> Action {
        switch phase {
        case .closed, .loggingIn:
            // A login under way keeps the connection busy, so nothing reaches here then.
            return .none
        case .greeting(let deadline):
            guard case .login(let username, let password, let version) = request else {
                return .reply(.error(id: id, .notLoggedIn))
            }
            guard version == Limits.protocolVersion else {
                return .reply(.error(id: id, .unsupportedVersion,
                                     message: "Error. This server speaks protocol version \(Limits.protocolVersion)"))
            }
            phase = .loggingIn(deadline: deadline)
            return .run(.login(username: username, password: password), id: id)
        case .online(let name, _):
            phase = .online(name: name, lastActivity: clock.now)
            return online(request, id: id, name: name)
        case .closing(let name, _):
            guard case .ack(let delivery) = request else { return .none }
            return .run(.acknowledge(delivery: delivery, user: name), id: id)
        }
    }

    private mutating func online(_ request: Request, id: Int64?, name: String) -> Action {
        switch request {
        case .login:
            return .reply(.error(id: id, .alreadyLoggedIn))
        case .message(let to, let text):
            guard Validation.isValidText(text) else { return .reply(Self.badText(id)) }
            guard Validation.isValidUsername(to) else { return .reply(.error(id: id, .unknownUser)) }
            let recipient = Validation.canonicalUsername(to)
            guard recipient != name else { return .reply(.error(id: id, .cannotMessageSelf)) }
            return .run(.message(to: recipient, text: text), id: id)
        case .broadcast(let text):
            guard Validation.isValidText(text) else { return .reply(Self.badText(id)) }
            return .run(.broadcast(text: text), id: id)
        case .whoelse:
            return .run(.whoelse, id: id)
        case .whoelsesince(let seconds):
            return .run(.whoelsesince(seconds: seconds), id: id)
        case .block(let user), .unblock(let user):
            let active = if case .block = request { true } else { false }
            guard Validation.isValidUsername(user) else { return .reply(.error(id: id, .unknownUser)) }
            let target = Validation.canonicalUsername(user)
            guard target != name else { return .reply(.error(id: id, active ? .cannotBlockSelf : .notBlocked)) }
            return .run(.setBlock(user: target, active: active), id: id)
        case .logout:
            guard !unacked.isEmpty else {
                phase = .closed
                return .logOut(id: id, linger: nil)
            }
            let deadline = clock.now + Self.ackWait
            phase = .closing(name: name, deadline: deadline)
            return .logOut(id: id, linger: deadline)
        case .ack(let delivery):
            return .run(.acknowledge(delivery: delivery, user: name), id: id)
        case .passwd(let old, let new):
            return .run(.changePassword(user: name, old: old, new: new), id: id)
        case .active:
            return id == nil ? .none : .reply(.ok(id: id))
        case .startPrivate, .privateAnswer, .stopPrivate:
            return .run(.privateLink(request), id: id)
        }
    }

    private static func badText(_ id: Int64?) -> Reply {
        .error(id: id, .badFrame, message: "Error. Message must be 1 to 4096 bytes")
    }
}
