import Foundation
import NIOCore
import NIOEmbedded
import ParleyTLS
import ParleyTestSupport
import Testing

@Suite("TLS contexts, keys and the certificate script")
struct TLSContextTests {
    @Test("a private key readable by group or others is refused with a clear message")
    func insecureKeyRefused() throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        chmod(certs.keyPath, 0o644)
        #expect(throws: TLSError.insecureKeyPermissions(path: certs.keyPath, mode: 0o644)) {
            try certs.serverContext()
        }
        let message = TLSError.insecureKeyPermissions(path: certs.keyPath, mode: 0o644).description
        #expect(message.contains("chmod 600"))
        chmod(certs.keyPath, 0o600)
        _ = try certs.serverContext()
    }

    @Test("a missing CA file or mismatched key fails closed")
    func badFilesRefused() throws {
        let certs = try TestCertificates.make()
        let other = try TestCertificates.make()
        defer { certs.remove(); other.remove() }
        #expect(throws: TLSError.self) { try TLSContext(role: .client(trustedCAPath: "/nonexistent/ca.pem")) }
        #expect(throws: TLSError.self) {
            try TLSContext(role: .server(certificateChainPath: certs.certificatePath, privateKeyPath: other.keyPath))
        }
    }

    @Test("in-memory identities have stable 32-byte fingerprints that differ per key")
    func fingerprints() throws {
        let a = try CertificateFactory.make(commonName: "a", kind: .peer)
        let b = try CertificateFactory.make(commonName: "b", kind: .peer)
        #expect(a.fingerprint.count == 32)
        #expect(a.fingerprint == a.fingerprint)
        #expect(a.fingerprint != b.fingerprint)
        #expect(a.certificatePEM().hasPrefix("-----BEGIN CERTIFICATE-----"))
    }

    @Test("writes before the handshake are held, never sent in the clear")
    func embeddedWritesHeld() throws {
        let certs = try TestCertificates.make()
        defer { certs.remove() }
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            TLSHandler(context: try certs.clientContext(), serverHostname: "localhost"))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        // The ClientHello goes out on activation.
        let hello = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(hello.getInteger(at: 0, as: UInt8.self) == 0x16)
        channel.writeAndFlush(ByteBuffer(string: "secret"), promise: nil)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        _ = try? channel.finish()
    }

    @Test("gen-certs.sh makes a CA and a leaf that the TLS layer accepts, keys 0600, no silent overwrite")
    func genCertsScript() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gencerts-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../scripts/gen-certs.sh").standardized.path
        #expect(try run(script, [dir.path, "--name", "chat.example.org"]) == 0)
        for key in ["ca.key", "server.key"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent(key).path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
        }
        let leaf = try String(contentsOfFile: dir.appendingPathComponent("server.pem").path, encoding: .utf8)
        #expect(leaf.components(separatedBy: "BEGIN CERTIFICATE").count == 2, "server.pem holds the leaf only")
        #expect(try run(script, [dir.path]) != 0, "refuses to overwrite without --force")
        #expect(try run(script, [dir.path, "--days", "365"]) == 64)

        let server = try TLSContext(
            role: .server(
                certificateChainPath: dir.appendingPathComponent("server.pem").path,
                privateKeyPath: dir.appendingPathComponent("server.key").path))
        let client = try TLSContext(role: .client(trustedCAPath: dir.appendingPathComponent("ca.pem").path))
        let echo = try await EchoServer.start(context: server)
        for host in ["localhost", "127.0.0.1", "chat.example.org"] {
            let (channel, seen) = try await connectClient(port: echo.port, context: client, hostname: host)
            #expect(await eventually { seen.handshakeCompleted }, "handshake as \(host)")
            try await channel.close()
        }
        try await echo.channel.close()
    }

    private func run(_ path: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [path] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
