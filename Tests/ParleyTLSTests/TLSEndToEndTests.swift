import Foundation
import NIOCore
import NIOPosix
import ParleyTLS
import ParleyTestSupport
import Testing

@Suite("TLS over real sockets on 127.0.0.1")
struct TLSEndToEndTests {
    @Test("handshake, then 1 MiB echoed back byte for byte")
    func largePayloadRoundTrip() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        let payload = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        try await client.writeAndFlush(ByteBuffer(bytes: payload))
        #expect(await eventually(20) { seen.bytes.count >= payload.count })
        #expect(seen.bytes == payload)
        #expect(server.seen.bytes == payload)
        guard case .handshakeCompleted(let info)? = seen.events.first else {
            Issue.record("no handshake event")
            return
        }
        #expect(info.protocolVersion == "TLSv1.3")
        #expect(TLSPolicy.cipherSuites.split(separator: ":").contains(Substring(info.cipherSuite)))
        try await client.close()
        try await server.channel.close()
    }

    @Test("10,000 small writes arrive in order, each byte intact")
    func manySmallPayloads() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        var expected: [UInt8] = []
        for i in 0..<10_000 {
            let line = Array("msg \(i) \(String(repeating: "x", count: i % 17))\n".utf8)
            expected += line
            client.write(ByteBuffer(bytes: line), promise: nil)
            if i % 100 == 99 { client.flush() }
        }
        client.flush()
        #expect(await eventually(20) { seen.bytes.count >= expected.count })
        #expect(seen.bytes == expected)
        try await client.close()
        try await server.channel.close()
    }

    @Test("writeAndFlushDirectly keeps its place among pipeline writes, also when made before the handshake")
    func directWritesKeepOrder() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        // Queued on the loop right after connecting: the first part usually precedes the handshake.
        try await client.eventLoop.submit {
            let tls = try client.pipeline.syncOperations.handler(type: TLSHandler.self)
            client.write(ByteBuffer(string: "a1,"), promise: nil)
            tls.writeAndFlushDirectly(ByteBuffer(string: "b1,"))
            client.write(ByteBuffer(string: "a2,"), promise: nil)
            client.flush()
            tls.writeAndFlushDirectly(ByteBuffer(string: "b2,"))
        }.get()
        #expect(await eventually { seen.handshakeCompleted })
        try await client.eventLoop.submit {
            let tls = try client.pipeline.syncOperations.handler(type: TLSHandler.self)
            client.write(ByteBuffer(string: "a3,"), promise: nil)
            tls.writeAndFlushDirectly(ByteBuffer(string: "b3."))
        }.get()
        let expected = Array("a1,b1,a2,b2,a3,b3.".utf8)
        #expect(await eventually { server.seen.bytes.count >= expected.count })
        #expect(server.seen.bytes == expected)
        #expect(await eventually { seen.bytes == expected })
        try await client.close()
        try await server.channel.close()
    }

    @Test("a client that does not trust the server's CA fails closed and sends nothing")
    func wrongCAFails() async throws {
        let certs = try TestCertificates.make()
        let other = try TestCertificates.make()
        defer { certs.remove(); other.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (client, seen) = try await connectClient(port: server.port, context: try other.clientContext())
        // Written before the handshake: must never reach an unverified server.
        client.writeAndFlush(ByteBuffer(string: "secret"), promise: nil)
        #expect(await eventually { !seen.tlsErrors.isEmpty })
        guard case .certificateVerificationFailed(let why)? = seen.tlsErrors.first else {
            Issue.record("expected a verification failure, got \(seen.errors)")
            return
        }
        #expect(why.contains("issuer") || why.contains("certificate"))
        #expect(await eventually { !client.isActive })
        #expect(server.seen.bytes.isEmpty)
        #expect(!seen.handshakeCompleted)
        try await server.channel.close()
    }

    @Test("a certificate for another host name is refused")
    func wrongHostnameFails() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (client, seen) = try await connectClient(
            port: server.port, context: try certs.clientContext(), hostname: "chat.example.org")
        #expect(await eventually { !seen.tlsErrors.isEmpty })
        #expect(seen.tlsErrors.first == .certificateVerificationFailed("hostname mismatch"))
        #expect(await eventually { !client.isActive })
        try await server.channel.close()
    }

    @Test("the IP address in the certificate verifies; another does not")
    func ipAddressChecked() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (good, goodSeen) = try await connectClient(port: server.port, context: try certs.clientContext(), hostname: "127.0.0.1")
        #expect(await eventually { goodSeen.handshakeCompleted })
        let (_, badSeen) = try await connectClient(port: server.port, context: try certs.clientContext(), hostname: "127.0.0.2")
        #expect(await eventually { !badSeen.tlsErrors.isEmpty })
        #expect(badSeen.tlsErrors.first == .certificateVerificationFailed("IP address mismatch"))
        try await good.close()
        try await server.channel.close()
    }

    @Test("an expired server certificate is refused")
    func expiredCertificateFails() async throws {
        let certs = try TestCertificates.make(leafNotBefore: -2 * 86_400, leafNotAfter: -86_400)
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (_, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        #expect(await eventually { !seen.tlsErrors.isEmpty })
        #expect(seen.tlsErrors.first == .certificateVerificationFailed("certificate has expired"))
        try await server.channel.close()
    }

    @Test("a plaintext client is refused and the server keeps serving TLS clients")
    func plaintextRefused() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        let (raw, _) = try await connectRaw(port: server.port)
        try await raw.writeAndFlush(ByteBuffer(string: "{\"type\":\"login\"}\n"))
        #expect(await eventually { server.seen.tlsErrors.contains(.notTLS) })
        #expect(await eventually { !raw.isActive })
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        try await client.writeAndFlush(ByteBuffer(string: "still here"))
        #expect(await eventually { seen.bytes == Array("still here".utf8) })
        try await client.close()
        try await server.channel.close()
    }

    @Test("a peer that vanishes mid-handshake or mid-record leaves no channel behind")
    func vanishingPeers() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())
        // Half a ClientHello record header, then gone.
        let (raw, _) = try await connectRaw(port: server.port)
        try await raw.writeAndFlush(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]))
        try await raw.close()
        // A full handshake, then a record header promising 16 KiB and only 100 bytes of it.
        let (client, seen) = try await connectClient(port: server.port, context: try certs.clientContext())
        #expect(await eventually { seen.handshakeCompleted })
        try await client.eventLoop.submit {
            // Below the TLS handler: raw bytes that look like the start of a record.
            let tls = try client.pipeline.syncOperations.context(handlerType: TLSHandler.self)
            tls.writeAndFlush(NIOAny(ByteBuffer(bytes: [0x17, 0x03, 0x03, 0x40, 0x00] + [UInt8](repeating: 7, count: 100))), promise: nil)
        }.get()
        try await Task.sleep(for: .milliseconds(50))
        try await client.close(mode: .all)
        #expect(await eventually { server.seen.acceptedChannels == 2 && server.seen.activeChannels == 0 })
        #expect(server.seen.bytes.isEmpty)
        try await server.channel.close()
    }

    @Test("a connection that never finishes its handshake is closed after the timeout")
    func handshakeTimeout() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext(), handshakeTimeout: .milliseconds(300))
        let (raw, _) = try await connectRaw(port: server.port)
        #expect(await eventually { server.seen.tlsErrors.contains(.handshakeTimeout) })
        #expect(await eventually { !raw.isActive })
        try await server.channel.close()
    }

    @Test("close_notify goes both ways: client-initiated and server-initiated closes are clean")
    func closeNotifyBothWays() async throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let server = try await EchoServer.start(context: try certs.serverContext())

        let (client, clientSeen) = try await connectClient(port: server.port, context: try certs.clientContext())
        #expect(await eventually { clientSeen.handshakeCompleted && server.seen.activeChannels == 1 })
        try await client.close()
        #expect(await eventually { server.seen.events.contains(.peerClosedCleanly) })
        #expect(clientSeen.events.contains(.peerClosedCleanly))
        #expect(!server.seen.tlsErrors.contains(.uncleanShutdown))

        let (second, secondSeen) = try await connectClient(port: server.port, context: try certs.clientContext())
        // The server finishes its side of a TLS 1.3 handshake after the client does: wait for both.
        let serverHandshakes = { server.seen.events.filter { if case .handshakeCompleted = $0 { true } else { false } }.count }
        #expect(await eventually { secondSeen.handshakeCompleted && serverHandshakes() == 2 })
        let serverChild = try #require(server.seen.channels.last)
        try await serverChild.close()
        #expect(await eventually { secondSeen.events.contains(.peerClosedCleanly) && !second.isActive })
        #expect(!secondSeen.tlsErrors.contains(.uncleanShutdown))
        try await server.channel.close()
    }
}

