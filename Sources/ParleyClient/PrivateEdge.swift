import NIOCore
import ParleyCrypto
import ParleyProtocol
import ParleyTLS

/// The private-session I/O of one client session: keys, listeners and links by attempt. It
/// decides nothing (`ClientStateMachine` does); what happens on a link comes back to the loop
/// as events. Used only by the session loop's task.
final class PrivateEdge: @unchecked Sendable {
    // Touched only by the loop's task; the closures handed to NIO only yield into `sink`.
    private let sink: AsyncStream<LoopEvent>.Continuation
    /// Where listeners bind: the local address of the server connection in use.
    var bindHost: String
    private let timeout: TimeAmount
    private var identities: [PrivateAttempt: TLSIdentity] = [:]
    var listeners: [PrivateAttempt: PrivateListener] = [:]
    private(set) var links: [PrivateAttempt: PrivateLink] = [:]
    /// Links being closed (a `bye` on its way); the session waits for them before it ends.
    private var closing: [EventLoopFuture<Void>] = []

    /// - Parameter bindHost: the address this client reaches the server from: the address the
    ///   server sees and relays (unless a NAT is in the way), and no wider than that.
    init(sink: AsyncStream<LoopEvent>.Continuation, bindHost: String, timeout: TimeAmount) {
        self.sink = sink
        self.bindHost = bindHost
        self.timeout = timeout
    }

    private static func freshIdentity() throws -> TLSIdentity {
        try CertificateFactory.make(commonName: "parley private", kind: .peer, notAfter: 3600)
    }

    /// A fresh in-memory key for `attempt`; its fingerprint (hex) goes to the server.
    func makeIdentity(for attempt: PrivateAttempt) -> Result<String, Error> {
        do {
            let identity = try Self.freshIdentity()
            identities[attempt] = identity
            return .success(Hex.encode(identity.fingerprint))
        } catch {
            return .failure(error)
        }
    }

    /// Opens a listener with a fresh key; reports `.listenerReady` or `.listenFailed`.
    func listen(_ attempt: PrivateAttempt) {
        let (sink, host, timeout) = (self.sink, bindHost, self.timeout)
        Task {
            do {
                let identity = try Self.freshIdentity()
                let listener = try await PrivateListener.open(
                    identity: identity, host: host, handshakeTimeout: timeout,
                    onOpen: { link in sink.yield(.linkReady(attempt, link)) },
                    onAbort: { error in sink.yield(.client(.privateLink(.failed(attempt: attempt, error)))) })
                sink.yield(.listenerReady(attempt, listener, fingerprint: Hex.encode(identity.fingerprint)))
            } catch {
                sink.yield(.client(.privateLink(.listenFailed(attempt: attempt, message: "\(error)"))))
            }
        }
    }

    /// Connects with the key made for `attempt`; reports `.linkReady` or `.failed`.
    func connect(_ attempt: PrivateAttempt, host: String, port: Int, expecting: PrivatePeerExpectation) {
        let (sink, timeout) = (self.sink, self.timeout)
        guard let identity = identities[attempt] else {
            sink.yield(.client(.privateLink(.failed(attempt: attempt, .refused))))
            return
        }
        Task {
            do {
                let link = try await PrivateLink.connect(host: host, port: port, identity: identity, expecting: expecting, timeout: timeout)
                sink.yield(.linkReady(attempt, link))
            } catch {
                sink.yield(.client(.privateLink(.failed(attempt: attempt, error as? PrivateLinkError ?? .refused))))
            }
        }
    }

    /// Keeps an open link and passes what it reports on, in its order.
    func adopt(_ link: PrivateLink, for attempt: PrivateAttempt) {
        links[attempt] = link
        let sink = self.sink
        Task {
            for await event in link.events { sink.yield(.client(.privateLink(.link(attempt: attempt, event)))) }
        }
    }

    /// Ends whatever `attempt` holds; a link says `reason` in a `bye` first.
    func close(_ attempt: PrivateAttempt, reason: String?) {
        identities[attempt] = nil
        listeners.removeValue(forKey: attempt)?.close()
        if let link = links.removeValue(forKey: attempt) { closing.append(link.close(saying: reason)) }
    }

    /// Closes what is left and waits until every link, and every `bye`, is done.
    func closeAll() async {
        for attempt in Set(listeners.keys).union(links.keys) { close(attempt, reason: nil) }
        identities = [:]
        for future in closing { try? await future.get() }
        closing = []
    }
}
