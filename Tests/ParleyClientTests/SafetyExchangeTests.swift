import NIOCore
import ParleyClient
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS
import Testing

private let mismatch = "safety-code commitment did not match (someone may be interfering)"

private func value(_ byte: UInt8) -> SafetyValue { SafetyValue(bytes: Array(repeating: byte, count: 32))! }

@Suite("safety code: commit, nonce, reveal inside the pinned TLS link", .serialized)
struct SafetyExchangeTests {
    @Test func theCodeDependsOnTheExporterAndBothRandomValues() {
        let exporter = Array(UInt8(0)..<32)
        let code = SafetyCode.code(exporter: exporter, connecting: value(0x11), accepting: value(0x22))
        // Known answer (computed independently with Python's hashlib), so the documented formula is the real one.
        #expect(code == "262 076")
        #expect(SafetyCode.code(exporter: exporter, connecting: value(0x12), accepting: value(0x22)) != code)
        #expect(SafetyCode.code(exporter: exporter, connecting: value(0x11), accepting: value(0x23)) != code)
        #expect(SafetyCode.code(exporter: Array(UInt8(1)...32), connecting: value(0x11), accepting: value(0x22)) != code)
        // The roles are not interchangeable.
        #expect(SafetyCode.code(exporter: exporter, connecting: value(0x22), accepting: value(0x11)) != code)
        // Six digits in two groups, leading zeros kept.
        for byte in UInt8(0)..<40 {
            let c = SafetyCode.code(exporter: exporter, connecting: value(byte), accepting: value(0x22))
            #expect(c.count == 7 && c.split(separator: " ").map(\.count) == [3, 3] && c.allSatisfy { $0 == " " || $0.isNumber })
        }
    }

    @Test func aCommitmentOpensOnlyWithItsValueInItsSession() {
        let exporter = Array(UInt8(0)..<32)
        let commitment = SafetyCode.commitment(to: value(0x11), exporter: exporter)
        #expect(commitment.hex == "873a30fe9eb8f2bf014e53b10ad941e184f59e29b32b792c9230bf3903019ca9")
        #expect(SafetyCode.opens(commitment, with: value(0x11), exporter: exporter))
        #expect(!SafetyCode.opens(commitment, with: value(0x12), exporter: exporter))
        // Bound to the TLS session: the same commitment replayed into another session does not open.
        #expect(!SafetyCode.opens(commitment, with: value(0x11), exporter: Array(UInt8(1)...32)))
        #expect(SafetyCode.freshNonce() != SafetyCode.freshNonce())
    }

    @Test func aRevealThatDoesNotMatchItsCommitmentAbortsTheSession() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await ListeningPeer(name: "bob", expecting: alice.fingerprint)
        // A lying alice: commits to one value and reveals another (as a grinding relay would have to).
        let liar = ScriptedPeer()
        let committed = SafetyCode.freshNonce()
        liar.script = { step, exporter in
            switch step {
            case .handshake: [.open(linkID: "s-1"), .commit(SafetyCode.commitment(to: committed, exporter: exporter))]
            case .frame(.nonce): [.reveal(SafetyCode.freshNonce())]
            case .frame: []
            }
        }
        _ = try await liar.connect(port: bob.port, identity: alice, pin: bob.identity.fingerprint)
        #expect(await waitUntil { bob.aborts == [.commitmentMismatch] && liar.closed })
        #expect(bob.links.isEmpty)
        // The detecting side said why before closing, and its user reads it.
        #expect(liar.received.last == .bye(reason: mismatch))
        #expect(!liar.received.contains(.welcome))
        let error = try #require(bob.aborts.first)
        let notice = PrivateNotice.aborted(user: "alice", reason: error.description, code: error.code)
        #expect(notice.human == ["Private session with alice aborted: \(mismatch)"])
        #expect(notice.json == .object([
            "event": .string("privateaborted"), "user": .string("alice"), "reason": .string(mismatch),
            "code": .string("commitment_mismatch"),
        ]))
        bob.listener.close()
    }

    @Test func aRelayPassingFramesThroughIsCaughtOnBothEnds() async throws {
        // A lying server relays mallory's fingerprint to both, and mallory forwards every frame
        // between her two TLS sessions: alice's commitment is bound to the wrong session for bob.
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let mallory = try CertificateFactory.make(commonName: "mallory", kind: .peer, notAfter: 600)
        let bob = try await ListeningPeer(name: "bob", expecting: mallory.fingerprint)
        let towardsBob = ScriptedPeer()
        let towardsAlice = ScriptedPeer()
        towardsBob.script = { step, _ in
            if case .frame(let frame) = step { towardsAlice.send([frame]) }
            return []
        }
        towardsAlice.script = { step, _ in
            if case .frame(let frame) = step { towardsBob.send([frame]) }
            return []
        }
        _ = try await towardsBob.connect(port: bob.port, identity: mallory, pin: bob.identity.fingerprint)
        #expect(await waitUntil { towardsBob.handshaken })
        let server = try await towardsAlice.listen(identity: mallory, pin: alice.fingerprint)
        do {
            _ = try await PrivateLink.connect(
                host: "127.0.0.1", port: server.localAddress!.port!, identity: alice,
                expecting: PrivatePeerExpectation(fingerprint: mallory.fingerprint, linkID: "s-1"), timeout: .seconds(3))
            Issue.record("alice's session opened through the relay")
        } catch {
            #expect(error == .abortedByPeer(reason: mismatch))
            #expect(PrivateNotice.aborted(user: "bob", reason: error.description, code: error.code).human
                == ["Private session with bob aborted: \(mismatch)"])
        }
        #expect(await waitUntil { bob.aborts == [.commitmentMismatch] })
        #expect(bob.links.isEmpty)
        try await server.close()
        bob.listener.close()
    }

    @Test func aManInTheMiddleRunningBothExchangesShowsDifferentCodes() async throws {
        // mallory terminates TLS with her own key on both sides and runs each exchange honestly
        // (the real PrivateLink code), relaying text: the only thing that gives her away is the code.
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let mallory = try await ListeningPeer(name: "mallory", expecting: alice.fingerprint)
        let realBob = try await ListeningPeer(name: "bob", expecting: mallory.identity.fingerprint)
        let aliceLink = try await PrivateLink.connect(
            host: "127.0.0.1", port: mallory.port, identity: alice,
            expecting: PrivatePeerExpectation(fingerprint: mallory.identity.fingerprint, linkID: "s-1"), timeout: .seconds(3))
        #expect(await waitUntil { mallory.links.count == 1 })
        let malloryFromAlice = try #require(mallory.links.first)
        let malloryToBob = try await PrivateLink.connect(
            host: "127.0.0.1", port: realBob.port, identity: mallory.identity,
            expecting: PrivatePeerExpectation(fingerprint: realBob.identity.fingerprint, linkID: "s-1"), timeout: .seconds(3))
        #expect(await waitUntil { realBob.links.count == 1 })
        let bobLink = try #require(realBob.links.first)
        // The relay works: alice's text reaches bob through mallory.
        try await aliceLink.send("meet at noon")
        var fromAlice = malloryFromAlice.events.makeAsyncIterator()
        #expect(await fromAlice.next() == .text("meet at noon"))
        try await malloryToBob.send("meet at noon")
        var atBob = bobLink.events.makeAsyncIterator()
        #expect(await atBob.next() == .text("meet at noon"))
        // Each leg agrees with itself; alice's and bob's screens differ (equal only with p = 10^-6).
        #expect(aliceLink.safetyCode == malloryFromAlice.safetyCode)
        #expect(malloryToBob.safetyCode == bobLink.safetyCode)
        #expect(aliceLink.safetyCode != bobLink.safetyCode)
        #expect(aliceLink.peerFingerprint == mallory.identity.fingerprint && bobLink.peerFingerprint == mallory.identity.fingerprint)
        for link in [aliceLink, malloryFromAlice, malloryToBob, bobLink] { await link.close(reason: nil) }
        mallory.listener.close()
        realBob.listener.close()
    }

    @Test func aPeerThatNeverRevealsIsCutOffByTheHandshakeTimeout() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await ListeningPeer(name: "bob", expecting: alice.fingerprint, timeout: .seconds(2))
        let staller = ScriptedPeer()
        staller.script = { step, exporter in
            guard case .handshake = step else { return [] }
            return [.open(linkID: "s-1"), .commit(SafetyCode.commitment(to: SafetyCode.freshNonce(), exporter: exporter))]
        }
        let started = ContinuousClock.now
        _ = try await staller.connect(port: bob.port, identity: alice, pin: bob.identity.fingerprint)
        #expect(await waitUntil { bob.aborts == [.exchangeTimedOut] && staller.closed })
        #expect(ContinuousClock.now - started < .seconds(6))
        #expect(staller.received.first.map { if case .nonce = $0 { true } else { false } } == true)
        #expect(staller.received.last == .bye(reason: "the safety-code exchange did not finish in time"))
        #expect(bob.links.isEmpty)
        bob.listener.close()
    }

    @Test func aMalformedExchangeFrameAbortsWithAReason() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        let bob = try await ListeningPeer(name: "bob", expecting: alice.fingerprint)
        let sloppy = ScriptedPeer()
        _ = try await sloppy.connect(port: bob.port, identity: alice, pin: bob.identity.fingerprint)
        #expect(await waitUntil { sloppy.handshaken })
        // Uppercase hex: the same bytes in a second spelling, refused by the strict parser.
        sloppy.sendRaw(#"{"type":"open","session":"s-1"}"# + "\n" + #"{"type":"commit","commitment":"\#(String(repeating: "AB", count: 32))"}"# + "\n")
        let why = "malformed frame (expected 64 lowercase hex digits for field 'commitment')"
        #expect(await waitUntil { bob.aborts == [.protocolViolation(why)] && sloppy.closed })
        #expect(sloppy.received == [.bye(reason: "protocol violation: \(why)")])
        #expect(bob.links.isEmpty)
        bob.listener.close()
    }

    @Test func noTextIsAcceptedBeforeTheExchangeFinished() async throws {
        let alice = try CertificateFactory.make(commonName: "alice", kind: .peer, notAfter: 600)
        // Towards the accepting side: a text squeezed in before the reveal.
        let bob = try await ListeningPeer(name: "bob", expecting: alice.fingerprint)
        let eager = ScriptedPeer()
        eager.script = { step, exporter in
            guard case .handshake = step else { return [] }
            return [.open(linkID: "s-1"), .commit(SafetyCode.commitment(to: SafetyCode.freshNonce(), exporter: exporter)), .text("sneaky")]
        }
        _ = try await eager.connect(port: bob.port, identity: alice, pin: bob.identity.fingerprint)
        #expect(await waitUntil { !bob.aborts.isEmpty && eager.closed })
        guard case .protocolViolation? = bob.aborts.first else { return #expect(Bool(false), "\(bob.aborts)") }
        #expect(bob.links.isEmpty)
        bob.listener.close()

        // Towards the connecting side: an accepting peer that skips the exchange (text, then welcome).
        let skipper = ScriptedPeer()
        let fakeBob = try CertificateFactory.make(commonName: "bob", kind: .peer, notAfter: 600)
        skipper.script = { step, _ in
            if case .frame(.commit) = step { return [.text("sneaky"), .welcome] }
            return []
        }
        let server = try await skipper.listen(identity: fakeBob, pin: alice.fingerprint)
        do {
            _ = try await PrivateLink.connect(
                host: "127.0.0.1", port: server.localAddress!.port!, identity: alice,
                expecting: PrivatePeerExpectation(fingerprint: fakeBob.fingerprint, linkID: "s-1"), timeout: .seconds(3))
            Issue.record("opened without the exchange")
        } catch {
            #expect(error == .protocolViolation("unexpected 'text' frame before the safety-code exchange finished"))
        }
        #expect(await waitUntil { skipper.received.contains(.bye(reason: "protocol violation: unexpected 'text' frame before the safety-code exchange finished")) })
        #expect(!skipper.received.contains { if case .reveal = $0 { true } else { false } })
        try await server.close()
    }
}
