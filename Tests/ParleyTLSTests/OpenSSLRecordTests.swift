import NIOCore
import ParleyTestSupport
import Testing

@testable import ParleyTLS

/// A server and a client connection joined in memory: what one writes, the other receives.
private struct Pair {
    let server: TLSConnection
    let client: TLSConnection

    init(_ certs: TestCertificates) throws {
        server = try TLSConnection(context: try certs.serverContext(), serverHostname: nil, pinnedFingerprint: nil)
        client = try TLSConnection(context: try certs.clientContext(), serverHostname: "localhost", pinnedFingerprint: nil)
    }

    func move(_ from: TLSConnection, _ to: TLSConnection) {
        if var bytes = from.takeOutbound() { to.receive(&bytes) }
    }

    func handshake() -> Bool {
        guard case .incomplete = client.handshake() else { return false }
        move(client, server)
        guard case .incomplete = server.handshake() else { return false }
        move(server, client)
        guard case .complete = client.handshake() else { return false }
        move(client, server)
        guard case .complete = server.handshake() else { return false }
        return true
    }
}

@Suite("OpenSSL carries every record of a server connection after the handshake")
struct OpenSSLRecordTests {
    @Test("data flows both ways after the handshake, through OpenSSL")
    func dataBothWays() throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let pair = try Pair(certs)
        #expect(pair.handshake())
        #expect(pair.client.write(ByteBuffer(string: "first words")) == nil)
        pair.move(pair.client, pair.server)
        var received = ByteBuffer()
        guard case .data = pair.server.read(into: &received) else { Issue.record("server read nothing"); return }
        #expect(received.readString(length: received.readableBytes) == "first words")
        #expect(pair.server.write(ByteBuffer(string: "and back")) == nil)
        pair.move(pair.server, pair.client)
        var back = ByteBuffer()
        guard case .data = pair.client.read(into: &back) else { Issue.record("client read nothing"); return }
        #expect(back.readString(length: back.readableBytes) == "and back")
    }

    // OpenSSL 3.0 takes any number of KeyUpdates in a row (each one a key derivation); the
    // handler ends a connection that sends 64 KiB of records without data.
    @Test("a client streaming KeyUpdates without data is cut off; the server keeps serving others")
    func keyUpdateFlood() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (raw, seen) = try await connectRaw(port: server.port)
        let client = try TLSConnection(context: try certs.clientContext(), serverHostname: "localhost", pinnedFingerprint: nil)
        var consumed = 0
        func feed() {
            let bytes = seen.bytes
            guard bytes.count > consumed else { return }
            var buffer = ByteBuffer(bytes: bytes[consumed...])
            consumed = bytes.count
            client.receive(&buffer)
        }
        func send() async throws {
            if let out = client.takeOutbound() { try await raw.writeAndFlush(out) }
        }
        _ = client.handshake()
        try await send()
        let done = await eventually(10) {
            feed()
            if case .complete = client.handshake() { return true }
            return false
        }
        #expect(done)
        try await send()  // the client's Finished
        #expect(client.write(ByteBuffer(string: "hi")) == nil)
        try await send()
        #expect(await eventually { seen.bytes.count > consumed })  // the echo
        // 27 bytes each: 64 KiB is about 2,430 of them; 4,000 are sent.
        for _ in 0..<40 {
            for _ in 0..<100 {
                #expect(client.queueKeyUpdate(requestingReply: false))
                _ = client.handshake()
            }
            try? await send()
        }
        #expect(await eventually(10) { !raw.isActive }, "the server closed the flooding connection")
        #expect(await eventually { server.seen.tlsErrors.contains { "\($0)".contains("without data") } })
        // Another client is served as before.
        let (other, otherSeen) = try await connectClient(port: server.port, context: try certs.clientContext())
        try await other.writeAndFlush(ByteBuffer(string: "still here"))
        #expect(await eventually { otherSeen.bytes == Array("still here".utf8) })
        try await other.close()
        try await server.channel.close()
    }

    @Test("a few KeyUpdates between data are accepted, and data keeps flowing under the new keys")
    func keyUpdatesWithData() throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let pair = try Pair(certs)
        #expect(pair.handshake())
        var received = ByteBuffer()
        for round in 0..<3 {
            #expect(pair.client.queueKeyUpdate(requestingReply: true))
            #expect(pair.client.write(ByteBuffer(string: "round\(round) ")) == nil)
            pair.move(pair.client, pair.server)
            guard case .data = pair.server.read(into: &received) else { Issue.record("no data in round \(round)"); return }
            // The server's answering KeyUpdate goes out with its next write.
            #expect(pair.server.write(ByteBuffer(string: "ok")) == nil)
            pair.move(pair.server, pair.client)
            var back = ByteBuffer()
            guard case .data = pair.client.read(into: &back) else { Issue.record("no answer in round \(round)"); return }
            #expect(back.readString(length: back.readableBytes) == "ok")
        }
        #expect(received.readString(length: received.readableBytes) == "round0 round1 round2 ")
    }
}
