@testable import ParleyTLS
import Testing

@Suite("TLS lifecycle state machine")
struct TLSStateMachineTests {
    @Test("writes wait for the handshake, then encrypt, then fail once closing")
    func writesFollowState() {
        var machine = TLSStateMachine()
        #expect(machine.write() == .buffer)
        let r2 = machine.startHandshake()
        #expect(r2)
        let r3 = machine.startHandshake()
        #expect(!r3)
        #expect(machine.write() == .buffer)
        let r5 = machine.handshakeCompleted()
        #expect(r5)
        #expect(machine.write() == .encrypt)
        let r7 = machine.closeRequested()
        #expect(r7 == .sendCloseNotify)
        #expect(machine.write() == .fail)
    }

    @Test("a close before the handshake ends closes at once")
    func closeDuringHandshake() {
        var machine = TLSStateMachine()
        _ = machine.startHandshake()
        let r9 = machine.closeRequested()
        #expect(r9 == .closeNow)
        #expect(machine.state == .closed)
        let r10 = machine.closeRequested()
        #expect(r10 == .alreadyClosing)
    }

    @Test("the peer's close_notify is answered; ours completes when the peer answers")
    func closeNotifyBothWays() {
        var peerFirst = TLSStateMachine()
        _ = peerFirst.startHandshake()
        _ = peerFirst.handshakeCompleted()
        let r11 = peerFirst.receivedCloseNotify()
        #expect(r11 == .replyAndClose)
        let r12 = peerFirst.channelInactive()
        #expect(r12 == .none)

        var weFirst = TLSStateMachine()
        _ = weFirst.startHandshake()
        _ = weFirst.handshakeCompleted()
        let r13 = weFirst.closeRequested()
        #expect(r13 == .sendCloseNotify)
        let r14 = weFirst.closeRequested()
        #expect(r14 == .alreadyClosing)
        let r15 = weFirst.receivedCloseNotify()
        #expect(r15 == .closeNow)
        #expect(weFirst.state == .closed)
    }

    @Test("EOF without close_notify is unclean once active, a failed handshake before")
    func inactiveOutcomes() {
        var active = TLSStateMachine()
        _ = active.startHandshake()
        _ = active.handshakeCompleted()
        let r16 = active.channelInactive()
        #expect(r16 == .uncleanShutdown)

        var handshaking = TLSStateMachine()
        _ = handshaking.startHandshake()
        let r17 = handshaking.channelInactive()
        #expect(r17 == .failHandshake)
        let r18 = handshaking.receivedCloseNotify()
        #expect(r18 == .ignore)
    }

    @Test("a failure is reported once")
    func failOnce() {
        var machine = TLSStateMachine()
        _ = machine.startHandshake()
        let r19 = machine.failed()
        #expect(r19)
        let r20 = machine.failed()
        #expect(!r20)
        let r21 = machine.handshakeCompleted()
        #expect(!r21)
    }

    @Test("ciphertext without data is allowed up to the budget; any data resets it")
    func bytesWithoutData() {
        var machine = TLSStateMachine()
        let limit = TLSStateMachine.maxBytesWithoutData
        let underLimit = machine.received(ciphertext: limit - 10, plaintext: 0)
        let withData = machine.received(ciphertext: 100, plaintext: 5)  // data: the count starts again
        let atLimit = machine.received(ciphertext: limit, plaintext: 0)
        let overLimit = machine.received(ciphertext: 1, plaintext: 0)
        #expect(underLimit && withData && atLimit)
        #expect(!overLimit)
    }
}
