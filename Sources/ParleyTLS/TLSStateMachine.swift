/// The lifecycle of one TLS connection, as a value type that returns what to do next.
/// The channel handler performs the actions; the machine only decides them, so it can be
/// tested without a channel.
struct TLSStateMachine {
    enum State: Equatable {
        case idle
        case handshaking
        case active
        /// We sent close_notify and wait (bounded) for the peer's.
        case closing
        case closed
    }

    enum WriteAction: Equatable {
        /// Hold the plaintext until the handshake ends (it is never sent unverified).
        case buffer
        /// Encrypt now.
        case encrypt
        /// The connection is going away: fail the write.
        case fail
    }

    enum CloseAction: Equatable {
        /// Nothing was ever negotiated: close the socket at once.
        case closeNow
        /// Send close_notify, then wait a bounded time for the peer's before closing.
        case sendCloseNotify
        /// Already closing: attach to the close in progress.
        case alreadyClosing
    }

    enum CloseNotifyAction: Equatable {
        /// The peer closed first: answer with our close_notify and close.
        case replyAndClose
        /// We closed first and the peer answered: the shutdown is complete.
        case closeNow
        /// A close_notify outside a session: treat it as a failure.
        case ignore
    }

    enum InactiveAction: Equatable {
        case none
        case failHandshake
        case uncleanShutdown
    }

    private(set) var state: State = .idle
    /// Ciphertext received since plaintext last came out of it.
    private var bytesWithoutData = 0

    /// How much ciphertext a peer may send without any data in it. Records that carry none
    /// (KeyUpdates, empty records) still cost OpenSSL a decryption and a key derivation each, and
    /// OpenSSL 3.0 accepts them without limit (1,000 KeyUpdates in a row, measured); a real peer
    /// sends data, and a close_notify ends the connection anyway.
    static let maxBytesWithoutData = 64 * 1024

    mutating func startHandshake() -> Bool {
        guard state == .idle else { return false }
        state = .handshaking
        return true
    }

    mutating func handshakeCompleted() -> Bool {
        guard state == .handshaking else { return false }
        state = .active
        return true
    }

    func write() -> WriteAction {
        switch state {
        case .idle, .handshaking: return .buffer
        case .active: return .encrypt
        case .closing, .closed: return .fail
        }
    }

    mutating func closeRequested() -> CloseAction {
        switch state {
        case .idle, .handshaking:
            state = .closed
            return .closeNow
        case .active:
            state = .closing
            return .sendCloseNotify
        case .closing, .closed:
            return .alreadyClosing
        }
    }

    mutating func receivedCloseNotify() -> CloseNotifyAction {
        switch state {
        case .active:
            state = .closed
            return .replyAndClose
        case .closing:
            state = .closed
            return .closeNow
        case .idle, .handshaking, .closed:
            return .ignore
        }
    }

    /// Counts `ciphertext` bytes that produced `plaintext` bytes; false once the peer has sent
    /// more than `maxBytesWithoutData` with nothing in it (the connection must end).
    mutating func received(ciphertext: Int, plaintext: Int) -> Bool {
        if plaintext > 0 {
            bytesWithoutData = 0
            return true
        }
        bytesWithoutData += ciphertext
        return bytesWithoutData <= Self.maxBytesWithoutData
    }

    /// A fatal error: every later event is ignored.
    mutating func failed() -> Bool {
        guard state != .closed else { return false }
        state = .closed
        return true
    }

    mutating func channelInactive() -> InactiveAction {
        defer { state = .closed }
        switch state {
        case .idle, .handshaking: return .failHandshake
        case .active: return .uncleanShutdown
        case .closing, .closed: return .none
        }
    }
}
