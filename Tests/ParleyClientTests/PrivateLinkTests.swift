import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ParleyClient
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS
import ParleyTestSupport
import Testing

/// The accepting side of a private session, opened the way a client does after saying yes.
private final class Accepting: @unchecked Sendable {
    // Immutable after init; accepted links sit in a locked box.
    let identity: TLSIdentity
    let listener: PrivateListener
    private let box: NIOLockedValueBox<[PrivateLink]>

    init(expecting peer: TLSIdentity, linkID: String = "s-1234", pin: [UInt8]? = nil) async throws {
        identity = try CertificateFactory.make(commonName: "bob", kind: .peer, notAfter: 600)
        let box = NIOLockedValueBox<[PrivateLink]>([])
        listener = try await PrivateListener.open(identity: identity, host: "127.0.0.1", handshakeTimeout: .seconds(3)) { link in
            box.withLockedValue { $0.append(link) }
        }
        listener.expect(PrivatePeerExpectation(fingerprint: pin ?? peer.fingerprint, linkID: linkID))
        self.box = box
    }

    var links: [PrivateLink] { box.withLockedValue { $0 } }

    func connect(_ identity: TLSIdentity, linkID: String = "s-1234", pin: [UInt8]? = nil) async throws(PrivateLinkError) -> PrivateLink {
        try await PrivateLink.connect(
            host: "127.0.0.1", port: listener.port, identity: identity,
            expecting: PrivatePeerExpectation(fingerprint: pin ?? self.identity.fingerprint, linkID: linkID),
            timeout: .seconds(3))
    }
}

/// Reads raw bytes from a plain TCP or non-pinned TLS connection, to see whether it was closed.
private final class Sink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let closed = NIOLockedValueBox(false)
    func channelInactive(context: ChannelHandlerContext) { closed.withLockedValue { $0 = true } }
    func errorCaught(context: ChannelHandlerContext, error: Error) { context.close(promise: nil) }
}

@Suite("private links: mutual pinning, one-time session ids, refusals")
struct PrivateLinkTests {
    @Test func bothSidesPinEachOtherAndShareTheSafetyCode() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await Accepting(expecting: alice)
        let link = try await bob.connect(alice)
        #expect(await eventually { bob.links.count == 1 })
        let accepted = try #require(bob.links.first)
        #expect(link.peerFingerprint == bob.identity.fingerprint)
        #expect(accepted.peerFingerprint == alice.fingerprint)
        #expect(link.safetyCode == accepted.safetyCode)
        #expect(link.safetyCode.count == 7 && link.safetyCode != "------")
        try await link.send("hello bob")
        var iterator = accepted.events.makeAsyncIterator()
        #expect(await iterator.next() == .text("hello bob"))
        await link.close(reason: "alice stopped private messaging")
        #expect(await iterator.next() == .bye(reason: "alice stopped private messaging"))
        #expect(await iterator.next() == .closed(nil))
        bob.listener.close()
    }

    @Test func aSpentSessionIdAndASecondConnectionAreRefused() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await Accepting(expecting: alice)
        let first = try await bob.connect(alice)
        #expect(await eventually { bob.links.count == 1 })
        // The accepting client stops listening once the session is open (as the client does).
        bob.listener.close()
        await #expect(throws: PrivateLinkError.self) { try await bob.connect(alice) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(bob.links.count == 1)
        await first.close(reason: nil)
    }

    @Test func aReplayWhileStillListeningIsRefusedByTheGate() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await Accepting(expecting: alice)
        let first = try await bob.connect(alice)
        // Listener deliberately left open: the one-time id alone must refuse the replay.
        await #expect(throws: PrivateLinkError.refused) { try await bob.connect(alice) }
        #expect(bob.links.count == 1)
        await first.close(reason: nil)
        bob.listener.close()
    }

    @Test func aWrongSessionIdIsRefused() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await Accepting(expecting: alice)
        await #expect(throws: PrivateLinkError.refused) { try await bob.connect(alice, linkID: "s-9999") }
        #expect(bob.links.isEmpty)
        bob.listener.close()
    }

    @Test func aSelfSignedCertificateWithAnotherKeyIsRefused() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let mallory = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await Accepting(expecting: alice)
        await #expect(throws: PrivateLinkError.self) { try await bob.connect(mallory) }
        #expect(bob.links.isEmpty)
        bob.listener.close()
    }

    @Test func aServerRelayingAWrongFingerprintMakesTheHandshakeFail() async throws {
        // A test double of the server: it hands alice a key that is not bob's.
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let other = try CertificateFactory.make(commonName: "bob", kind: .peer, notAfter: 600)
        let bob = try await Accepting(expecting: alice)
        do {
            _ = try await bob.connect(alice, pin: other.fingerprint)
            Issue.record("connected despite a wrong pin")
        } catch {
            guard case .tls(.certificateVerificationFailed) = error else { return #expect(Bool(false), "\(error)") }
        }
        #expect(bob.links.isEmpty)
        // And the other way: bob told a wrong key for alice refuses her.
        let bob2 = try await Accepting(expecting: alice, pin: other.fingerprint)
        await #expect(throws: PrivateLinkError.self) { try await bob2.connect(alice) }
        #expect(bob2.links.isEmpty)
        bob.listener.close()
        bob2.listener.close()
    }

    @Test func noCertificateAndPlaintextAreRefused() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await Accepting(expecting: alice)
        // A TLS client that presents no certificate at all.
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let anonymous = try certs.clientContext()
        let sink = Sink()
        let tlsChannel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: anonymous, serverHostname: "127.0.0.1"))
                    try channel.pipeline.syncOperations.addHandler(sink)
                }
            }
            .connect(host: "127.0.0.1", port: bob.listener.port).get()
        #expect(await eventually { sink.closed.withLockedValue { $0 } })
        _ = tlsChannel
        // Plaintext: the session-open frame without TLS.
        let plain = Sink()
        let plainChannel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(plain) }
            }
            .connect(host: "127.0.0.1", port: bob.listener.port).get()
        try await plainChannel.writeAndFlush(ByteBuffer(string: #"{"type":"open","session":"s-1234"}"# + "\n"))
        #expect(await eventually { plain.closed.withLockedValue { $0 } })
        #expect(bob.links.isEmpty)
        // The real peer still gets in afterwards: the refusals did not spend the session.
        let link = try await bob.connect(alice)
        #expect(await eventually { bob.links.count == 1 })
        await link.close(reason: nil)
        bob.listener.close()
    }

    @Test func privateFramesRoundTrip() throws {
        for frame in [PrivateFrame.open(linkID: "abc"), .welcome, .text("hi\nthere"), .bye(reason: "x")] {
            #expect(try PrivateFrame.decode(from: ByteBuffer(bytes: frame.buffer().readableBytesView.dropLast())) == frame)
        }
    }
}
