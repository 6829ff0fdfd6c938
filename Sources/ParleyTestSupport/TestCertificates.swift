import Foundation
import ParleyTLS

/// A private CA and a server certificate written to a fresh temporary directory, for one test.
public struct TestCertificates: Sendable {
    /// The directory holding ca.pem, server.pem and server.key.
    public let directory: URL
    /// The CA, kept in memory so a test can issue the server a new certificate (reload tests).
    public let authority: TLSIdentity?

    public init(directory: URL, authority: TLSIdentity? = nil) {
        self.directory = directory
        self.authority = authority
    }
    public var caPath: String { directory.appendingPathComponent("ca.pem").path }
    public var certificatePath: String { directory.appendingPathComponent("server.pem").path }
    public var keyPath: String { directory.appendingPathComponent("server.key").path }

    /// Makes a CA and a leaf for localhost/127.0.0.1/::1. `leafNotAfter` < 0 makes an expired leaf.
    public static func make(
        dnsNames: [String] = ["localhost"],
        ipAddresses: [String] = ["127.0.0.1", "::1"],
        leafNotBefore: Int = -60,
        leafNotAfter: Int = 86_400
    ) throws -> TestCertificates {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parley-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let ca = try CertificateFactory.make(commonName: "Parley Test CA", kind: .certificateAuthority)
        let leaf = try CertificateFactory.make(
            commonName: dnsNames.first ?? "localhost",
            kind: .server(dnsNames: dnsNames, ipAddresses: ipAddresses),
            issuer: ca,
            notBefore: leafNotBefore,
            notAfter: leafNotAfter)
        let certs = TestCertificates(directory: dir, authority: ca)
        try ca.certificatePEM().write(toFile: certs.caPath, atomically: true, encoding: .utf8)
        try leaf.certificatePEM().write(toFile: certs.certificatePath, atomically: true, encoding: .utf8)
        try writeSecret(leaf.privateKeyPEM(), to: certs.keyPath)
        return certs
    }

    /// Replaces server.pem and server.key with a new leaf from the same CA (a renewal); returns
    /// the new key's fingerprint, which new handshakes then show.
    @discardableResult
    public func reissueLeaf(notBefore: Int = -60, notAfter: Int = 86_400) throws -> [UInt8] {
        guard let authority else { throw CocoaError(.featureUnsupported) }
        let leaf = try CertificateFactory.make(
            commonName: "localhost", kind: .server(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"]),
            issuer: authority, notBefore: notBefore, notAfter: notAfter)
        try Self.writeSecret(leaf.privateKeyPEM(), to: keyPath)
        try leaf.certificatePEM().write(toFile: certificatePath, atomically: true, encoding: .utf8)
        return leaf.fingerprint
    }

    /// The fingerprint of the key in server.pem now.
    public func leafFingerprint() throws -> [UInt8] {
        try CertificateInfo.chain(inPEMFile: certificatePath)[0].fingerprint
    }

    /// Writes a file created with mode 0600 from the start (never briefly world-readable).
    public static func writeSecret(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw CocoaError(.fileWriteNoPermission) }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw CocoaError(.fileWriteUnknown) }
    }

    /// Removes the directory.
    public func remove() {
        try? FileManager.default.removeItem(at: directory)
    }

    /// A server context over these files.
    public func serverContext() throws -> TLSContext {
        try TLSContext(role: .server(certificateChainPath: certificatePath, privateKeyPath: keyPath))
    }

    /// A client context trusting this CA only.
    public func clientContext() throws -> TLSContext {
        try TLSContext(role: .client(trustedCAPath: caPath))
    }
}
