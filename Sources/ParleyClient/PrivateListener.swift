import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// The accepting side of a private session: a TLS 1.3 listener on an ephemeral port that
/// requires a client certificate, pins the key the server relayed, accepts the session id once,
/// runs the safety-code exchange, and then stops listening. Connections refused before the session
/// id is accepted are dropped without anyone being told; a later failure goes to `onAbort`.
public final class PrivateListener: Sendable {
    /// The port the OS picked.
    public let port: Int
    private let channel: Channel
    private let expectation: EventLoopPromise<PrivatePeerExpectation>
    private let gate: LinkIDGate
    private let settled = NIOLockedValueBox(false)

    private init(port: Int, channel: Channel, expectation: EventLoopPromise<PrivatePeerExpectation>, gate: LinkIDGate) {
        self.port = port
        self.channel = channel
        self.expectation = expectation
        self.gate = gate
    }

    /// Listens on `host` (port 0). Connections that arrive before `expect(_:)` wait for it: the
    /// pin is not known until the server relays the other side's fingerprint. `handshakeTimeout`
    /// bounds TLS, the session id and the safety-code exchange together.
    public static func open(
        identity: TLSIdentity, host: String, handshakeTimeout: TimeAmount = .seconds(10),
        group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onOpen: @escaping @Sendable (PrivateLink) -> Void,
        onAbort: @escaping @Sendable (PrivateLinkError) -> Void = { _ in }
    ) async throws -> PrivateListener {
        let context = try TLSContext(role: .peer(identity: identity, accepting: true))
        let loop = group.next()
        let expectation = loop.makePromise(of: PrivatePeerExpectation.self)
        let gate = LinkIDGate()
        let accepted = expectation.futureResult
        let channel: Channel
        do {
            channel = try await ServerBootstrap(group: loop)
                .serverChannelOption(.backlog, value: 4)
                .childChannelInitializer { child in
                    accepted.hop(to: child.eventLoop).flatMapThrowing { expected in
                        let sync = child.pipeline.syncOperations
                        try sync.addHandler(
                            TLSHandler(context: context, pinnedFingerprint: expected.fingerprint, handshakeTimeout: handshakeTimeout))
                        try sync.addHandler(ByteToMessageHandler(FrameDecoder()))
                        try sync.addHandler(
                            PrivateLinkHandler(
                                role: .accepting(gate: gate, onOpen: onOpen, onAbort: onAbort), openTimeout: handshakeTimeout))
                    }
                }
                .bind(host: host, port: 0).get()
        } catch {
            expectation.fail(PrivateLinkError.refused)
            throw error
        }
        return PrivateListener(port: channel.localAddress?.port ?? 0, channel: channel, expectation: expectation, gate: gate)
    }

    /// What the server relayed: the pin and the session id. Later calls are ignored.
    public func expect(_ expected: PrivatePeerExpectation) {
        guard settle() else { return }
        gate.expect(expected.linkID)
        expectation.succeed(expected)
    }

    /// Stops listening; connections still waiting for the expectation are dropped.
    public func close() {
        if settle() { expectation.fail(PrivateLinkError.refused) }
        channel.close(promise: nil)
    }

    /// True the first time: a promise is completed once.
    private func settle() -> Bool {
        settled.withLockedValue { done in
            defer { done = true }
            return !done
        }
    }
}
