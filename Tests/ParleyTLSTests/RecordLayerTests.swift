import NIOCore
import NIOPosix
import ParleyTestSupport
import Testing

@testable import ParleyTLS

/// Two ends of one connection: what `a` writes, `b` reads.
private func pair(_ suite: RecordSuite) -> (TLS13Records, TLS13Records) {
    let clientSecret = (0..<suite.hashLength).map { UInt8($0) }
    let serverSecret = (0..<suite.hashLength).map { UInt8(200 - $0) }
    return (
        TLS13Records(suite: suite, readSecret: clientSecret, writeSecret: serverSecret)!,
        TLS13Records(suite: suite, readSecret: serverSecret, writeSecret: clientSecret)!
    )
}

private func seal(_ records: inout TLS13Records, _ plaintext: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: TLS13Records.sealedLength(plaintext.count))
    let n = plaintext.withUnsafeBytes { p in out.withUnsafeMutableBytes { records.seal(p, into: $0) } }
    return Array(out[0..<(n ?? 0)])
}

/// Opens every whole record in `stream`; returns the application data and the last non-data outcome.
private func open(_ records: inout TLS13Records, _ stream: [UInt8]) -> (data: [UInt8], last: TLS13Records.Opened?) {
    var data: [UInt8] = []
    var offset = 0
    while offset < stream.count {
        let header = stream[offset...].withUnsafeBytes { TLS13Records.inspect($0) }
        guard case .complete(let length) = header else {
            if case .invalid(let alert, let why) = header { return (data, .failed(alert, why)) }
            return (data, nil)
        }
        var out = [UInt8](repeating: 0, count: length)
        let opened = stream[offset..<offset + length].withUnsafeBytes { record in
            out.withUnsafeMutableBytes { records.open(record: record, into: $0) }
        }
        offset += length
        switch opened {
        case .data(let n): data += out[0..<n]
        case .nothing: continue
        default: return (data, opened)
        }
    }
    return (data, nil)
}

/// A KeyUpdate record from `records` (which moves to its next write key).
private func keyUpdate(_ records: inout TLS13Records, requesting: Bool) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: TLS13Records.keyUpdateRecordLength)
    let n = out.withUnsafeMutableBytes { records.sealKeyUpdate(requestingUpdate: requesting, into: $0) }
    return Array(out[0..<(n ?? 0)])
}

/// A record whose inner plaintext is exactly `content` then `type`.
private func raw(_ records: inout TLS13Records, type: UInt8, _ content: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: content.count + TLS13Records.overhead)
    let n = content.withUnsafeBytes { c in out.withUnsafeMutableBytes { records.sealRecord(type: type, c, into: $0, at: 0) } }
    return Array(out[0..<(n ?? 0)])
}

@Suite("TLS 1.3 record layer (after OpenSSL's handshake)")
struct RecordLayerUnitTests {
    @Test("every suite: 40 KiB round-trips in full records, in order", arguments: [
        RecordSuite.aes128GCM, .aes256GCM, .chacha20Poly1305,
    ])
    func roundTrip(suite: RecordSuite) {
        var (server, client) = pair(suite)
        let payload = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let wire = seal(&server, payload)
        #expect(wire.count == payload.count + 3 * TLS13Records.overhead)  // 16 KiB + 16 KiB + rest
        let second = seal(&server, Array("more".utf8))
        let result = open(&client, wire + second)
        #expect(result.data == payload + Array("more".utf8))
        #expect(result.last == nil)
        // The same bytes again are stale: sequence numbers moved on.
        #expect(open(&client, second).last == .failed(.badRecordMAC, "record failed authentication"))
    }

    @Test("a flipped bit in a record's type, version, body or tag fails it and yields no plaintext")
    func tampering() {
        let (server0, _) = pair(.aes128GCM)
        // (A changed length byte changes the framing instead: the record is then incomplete.)
        for index in [0, 1, 2, 5, 10, 25, 30, 33] {
            var server = server0
            var (_, client) = pair(.aes128GCM)
            var wire = seal(&server, Array("hello, world".utf8))
            wire[index] ^= 0x01
            let result = open(&client, wire)
            #expect(result.data.isEmpty, "byte \(index)")
            #expect(result.last != nil, "byte \(index)")
        }
    }

    @Test("headers a TLS 1.3 peer may not send after the handshake are refused before decryption")
    func badHeaders() {
        let ccs: [UInt8] = [20, 3, 3, 0, 1, 1]
        #expect(ccs.withUnsafeBytes { TLS13Records.inspect($0) } == .invalid(.unexpectedMessage, "unexpected record type 20 after the handshake"))
        let plainAlert: [UInt8] = [21, 3, 3, 0, 2, 2, 40]
        #expect(plainAlert.withUnsafeBytes { TLS13Records.inspect($0) } != .incomplete)
        let huge: [UInt8] = [23, 3, 3, 0x41, 0x01]  // 16,641 > 2^14 + 256
        #expect(huge.withUnsafeBytes { TLS13Records.inspect($0) } == .invalid(.recordOverflow, "record of 16641 bytes exceeds 2^14 + 256"))
        let tiny: [UInt8] = [23, 3, 3, 0, 16] + [UInt8](repeating: 0, count: 16)
        #expect(tiny.withUnsafeBytes { TLS13Records.inspect($0) } == .invalid(.badRecordMAC, "record of 16 bytes is too short to be protected"))
        let partial: [UInt8] = [23, 3, 3, 0, 40, 1, 2]
        #expect(partial.withUnsafeBytes { TLS13Records.inspect($0) } == .incomplete)
    }

    @Test("close_notify and other alerts: the first ends cleanly, the rest end the connection without a reply")
    func alerts() {
        var (server, client) = pair(.aes128GCM)
        #expect(open(&client, server.sealAlert(.closeNotify)).last == .closeNotify)
        var (server2, client2) = pair(.aes128GCM)
        #expect(open(&client2, server2.sealAlert(.userCanceled)).last == nil)
        #expect(open(&client2, server2.sealAlert(.badRecordMAC)).last == .failed(nil, "peer sent alert 20"))
    }

    @Test("KeyUpdate: the reader follows the writer's new key; old-key records are refused after it")
    func keyUpdateNotRequested() {
        var (server, client) = pair(.chacha20Poly1305)
        let before = seal(&server, Array("before".utf8))
        let update = keyUpdate(&server, requesting: false)
        #expect(update.count == TLS13Records.keyUpdateRecordLength)
        let after = seal(&server, Array("after".utf8))
        let result = open(&client, before + update + after)
        #expect(result.data == Array("beforeafter".utf8))
        #expect(!client.keyUpdateOwed)  // update_not_requested: no answer
        #expect(!server.writeKeyExpired)
    }

    @Test("KeyUpdate requested (three times): one KeyUpdate goes out before our next data, none after")
    func keyUpdateRequested() {
        var (server, client) = pair(.aes128GCM)
        let requests = keyUpdate(&client, requesting: true) + keyUpdate(&client, requesting: true)
            + keyUpdate(&client, requesting: true) + seal(&client, Array("hi".utf8))
        #expect(open(&server, requests).data == Array("hi".utf8))
        #expect(server.keyUpdateOwed)
        let answer = seal(&server, Array("one".utf8))
        #expect(!server.keyUpdateOwed)
        #expect(answer.count == TLS13Records.keyUpdateRecordLength + 3 + TLS13Records.overhead)
        let next = seal(&server, Array("two".utf8))
        #expect(next.count == 3 + TLS13Records.overhead)
        #expect(open(&client, answer + next).data == Array("onetwo".utf8))
    }

    @Test("post-handshake messages: KeyUpdate must be alone in its record and well formed; nothing else is accepted")
    func badHandshakeMessages() {
        let cases: [([UInt8], TLS13Records.Opened)] = [
            ([24, 0, 0, 1, 0, 24, 0, 0, 1, 0], .failed(.unexpectedMessage, "data after a KeyUpdate in its record")),
            ([24, 0, 0, 1, 2], .failed(.illegalParameter, "KeyUpdate request_update 2")),
            ([24, 0, 0, 2, 0, 0], .failed(.decodeError, "malformed KeyUpdate")),
            ([24, 0, 0, 1], .failed(.decodeError, "malformed KeyUpdate")),
            ([4, 0, 0, 1, 0], .failed(.unexpectedMessage, "unexpected post-handshake message")),
            ([24], .failed(.unexpectedMessage, "unexpected post-handshake message")),
        ]
        for (content, expected) in cases {
            var (server, client) = pair(.aes128GCM)
            #expect(open(&server, raw(&client, type: 22, content)).last == expected, "\(content)")
        }
        var (server, client) = pair(.aes128GCM)
        #expect(open(&server, raw(&client, type: 20, [1])).last == .failed(.unexpectedMessage, "unexpected content type 20"))
        #expect(open(&server, raw(&client, type: 21, [1, 0, 0])).last == .failed(.decodeError, "malformed alert"))
    }

    @Test("padding after the content type is stripped; a record of only zeros is refused")
    func padding() {
        var (server, client) = pair(.aes256GCM)
        // Inner plaintext "padded" 23 0 0 0 0: sealed with type 0 after the caller's own bytes.
        #expect(open(&server, raw(&client, type: 0, Array("padded".utf8) + [23, 0, 0, 0])).data == Array("padded".utf8))
        #expect(open(&server, raw(&client, type: 0, [0, 0, 0])).last == .failed(.unexpectedMessage, "record has no content type"))
    }

    @Test("a record that fails authentication leaves no plaintext behind in the output buffer")
    func failedOpenWipesOutput() {
        var (server, client) = pair(.aes128GCM)
        var wire = seal(&client, Array("SECRET-PLAINTEXT".utf8))
        wire[wire.count - 1] ^= 1  // the tag
        var out = [UInt8](repeating: 0xee, count: wire.count)
        let opened = wire.withUnsafeBytes { record in out.withUnsafeMutableBytes { server.open(record: record, into: $0) } }
        #expect(opened == .failed(.badRecordMAC, "record failed authentication"))
        #expect(!out.contains(UInt8(ascii: "S")))
    }

    @Test("records are sealed with the sender's key, so a reflected record does not open")
    func reflection() {
        var (server, _) = pair(.aes256GCM)
        var (serverReading, _) = pair(.aes256GCM)
        let wire = seal(&server, Array("echo".utf8))
        #expect(open(&serverReading, wire).last == .failed(.badRecordMAC, "record failed authentication"))
    }
}

@Suite("TLS 1.3 record layer against OpenSSL's client, over 127.0.0.1")
struct RecordLayerInteropTests {
    @Test("the client's Finished and its first record arrive in one read: the handover loses nothing")
    func finishedAndDataTogether() throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try TLSConnection(context: try certs.serverContext(), serverHostname: nil, pinnedFingerprint: nil)
        let client = try TLSConnection(context: try certs.clientContext(), serverHostname: "localhost", pinnedFingerprint: nil)
        func move(_ from: TLSConnection, _ to: TLSConnection) {
            if var bytes = from.takeOutbound() { to.receive(&bytes) }
        }
        guard case .incomplete = client.handshake() else { Issue.record("client finished early"); return }
        move(client, server)  // ClientHello
        guard case .incomplete = server.handshake() else { Issue.record("server finished early"); return }
        move(server, client)  // ServerHello ... Finished
        guard case .complete = client.handshake() else { Issue.record("client handshake failed"); return }
        #expect(client.write(ByteBuffer(string: "first words")) == nil)
        move(client, server)  // the client's Finished and its first record, together
        guard case .complete = server.handshake() else { Issue.record("server handshake failed"); return }
        #expect(server.usesParleyRecordLayer)
        var received = ByteBuffer()
        guard case .data = server.read(into: &received) else { Issue.record("no data after the handover"); return }
        #expect(received.readString(length: received.readableBytes) == "first words")
        #expect(server.write(ByteBuffer(string: "and back")) == nil)
        move(server, client)
        var back = ByteBuffer()
        guard case .data = client.read(into: &back) else { Issue.record("client read nothing"); return }
        #expect(back.readString(length: back.readableBytes) == "and back")
    }

    @Test("each suite: the server frees OpenSSL's state and echoes 256 KiB to an OpenSSL client", arguments: [
        "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
    ])
    func suites(suite: String) async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let clientContext = try certs.clientContext()
        #expect(clientContext.restrictCipherSuites(suite))
        let (client, seen) = try await connectClient(port: server.port, context: clientContext)
        let payload = (0..<(256 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        try await client.writeAndFlush(ByteBuffer(bytes: payload))
        #expect(await eventually(20) { seen.bytes.count >= payload.count })
        #expect(seen.bytes == payload)
        guard case .handshakeCompleted(let info)? = server.seen.events.first else {
            Issue.record("no server handshake event")
            return
        }
        #expect(info.cipherSuite == suite)
        #expect(info.recordLayer == .parley)
        try await client.close()
        #expect(await eventually { server.seen.events.contains(.peerClosedCleanly) })
        try await server.channel.close()
    }

    @Test("a KeyUpdate that requests one back is answered; data flows both ways under the new keys")
    func keyUpdateFromClient() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        try await client.writeAndFlush(ByteBuffer(string: "one "))
        #expect(await eventually { seen.bytes.count == 4 })
        for round in 0..<3 {
            let requested = try await client.eventLoop.submit {
                try client.pipeline.syncOperations.handler(type: TLSHandler.self).requestKeyUpdate()
            }.get()
            #expect(requested)
            try await client.writeAndFlush(ByteBuffer(string: "round\(round) "))
        }
        try await client.writeAndFlush(ByteBuffer(string: "done"))
        let expected = Array("one round0 round1 round2 done".utf8)
        #expect(await eventually { seen.bytes.count >= expected.count })
        #expect(seen.bytes == expected)
        #expect(seen.errors.isEmpty)
        try await client.close()
        try await server.channel.close()
    }

    @Test("a forged record after the handshake ends that connection with an alert; the server serves others")
    func forgedRecord() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        try await client.writeAndFlush(ByteBuffer(string: "hi"))
        #expect(await eventually { seen.bytes.count == 2 })
        // Written below the client's TLS handler: straight onto the socket.
        let forged: [UInt8] = [23, 3, 3, 0, 20] + [UInt8](repeating: 0x5a, count: 20)
        try await client.eventLoop.submit {
            let context = try client.pipeline.syncOperations.context(handlerType: TLSHandler.self)
            context.writeAndFlush(NIOAny(ByteBuffer(bytes: forged)), promise: nil)
        }.get()
        #expect(await eventually { !client.isActive })
        #expect(server.seen.tlsErrors.contains(.protocolFailure(["record failed authentication"])))
        // OpenSSL on the client side read our bad_record_mac alert.
        #expect(seen.tlsErrors.contains { "\($0)".contains("bad record mac") })

        let (other, otherSeen) = try await connectClient(port: server.port, context: try certs.clientContext())
        try await other.writeAndFlush(ByteBuffer(string: "still here"))
        #expect(await eventually { otherSeen.bytes.count == 10 })
        try await other.close()
        try await server.channel.close()
    }

    @Test("--tls-records openssl keeps OpenSSL's record layer")
    func opensslRecordLayer() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let context = try TLSContext(
            role: .server(certificateChainPath: certs.certificatePath, privateKeyPath: certs.keyPath),
            recordLayer: .openssl)
        let server = try await EchoServer.start(context: context)
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        try await client.writeAndFlush(ByteBuffer(string: "openssl"))
        #expect(await eventually { seen.bytes.count == 7 })
        guard case .handshakeCompleted(let info)? = server.seen.events.first else {
            Issue.record("no server handshake event")
            return
        }
        #expect(info.recordLayer == .openssl)
        try await client.close()
        try await server.channel.close()
    }
}
