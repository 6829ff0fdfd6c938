internal import COpenSSL
internal import CParleyShims
import Foundation

/// What `parley-server check` needs to know about one certificate in a PEM file, read by OpenSSL.
public struct CertificateInfo: Sendable, Equatable {
    /// The subject, in OpenSSL's one-line form (e.g. "/CN=localhost").
    public var subject: String
    public var notBefore: Date
    public var notAfter: Date
    /// SHA-256 of the certificate's SubjectPublicKeyInfo (what a new handshake shows a client).
    public var fingerprint: [UInt8]

    /// Whole days from `now` until `notAfter` (negative once expired).
    public func daysLeft(at now: Date = Date()) -> Int {
        Int((notAfter.timeIntervalSince(now) / 86_400).rounded(.down))
    }

    /// Every certificate in a PEM file, leaf first as the file has them. Throws when the file
    /// cannot be read or holds no certificate, or a certificate's dates cannot be read.
    public static func chain(inPEMFile path: String) throws(TLSError) -> [CertificateInfo] {
        ERR_clear_error()
        guard let bio = BIO_new_file(path, "r") else {
            throw .configuration(OpenSSLErrorQueue.describe("reading \(path)"))
        }
        defer { BIO_free(bio) }
        var chain: [CertificateInfo] = []
        while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) {
            defer { X509_free(certificate) }
            chain.append(try info(certificate, path: path))
        }
        // Reading stops at the end of the file with a "no start line" error; anything else is damage.
        let reasons = OpenSSLErrorQueue.drain().filter { !$0.contains("no start line") }
        guard reasons.isEmpty, !chain.isEmpty else {
            let why = reasons.isEmpty ? "no PEM certificate in the file" : reasons.joined(separator: "; ")
            throw .configuration("reading certificate \(path): \(why)")
        }
        return chain
    }

    private static func info(_ certificate: OpaquePointer, path: String) throws(TLSError) -> CertificateInfo {
        guard let notBefore = date(X509_get0_notBefore(certificate)), let notAfter = date(X509_get0_notAfter(certificate))
        else { throw .configuration("reading certificate \(path): unreadable validity dates") }
        var subject = "?"
        if let line = X509_NAME_oneline(X509_get_subject_name(certificate), nil, 0) {
            subject = String(cString: line)
            parley_OPENSSL_free(line)
        }
        return CertificateInfo(
            subject: subject, notBefore: notBefore, notAfter: notAfter,
            fingerprint: spkiFingerprint(ofKey: X509_get0_pubkey(certificate)))
    }

    private static func date(_ time: UnsafePointer<ASN1_TIME>?) -> Date? {
        guard let time else { return nil }
        var parts = tm()
        guard ASN1_TIME_to_tm(time, &parts) == 1 else { return nil }
        return Date(timeIntervalSince1970: TimeInterval(timegm(&parts)))
    }
}

extension TLSContext {
    /// Loads the certificate and key into a scratch context and asks OpenSSL whether they belong
    /// together, without the key-permission check (`check` reports permissions on its own line).
    public static func checkKeyMatchesCertificate(certificatePath: String, privateKeyPath: String) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_method()) else {
            throw .configuration(OpenSSLErrorQueue.describe("SSL_CTX_new"))
        }
        defer { SSL_CTX_free(ctx) }
        guard SSL_CTX_use_certificate_chain_file(ctx, certificatePath) == 1 else {
            throw .configuration(OpenSSLErrorQueue.describe("loading certificate \(certificatePath)"))
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, privateKeyPath, SSL_FILETYPE_PEM) == 1 else {
            // OpenSSL compares the key with the loaded certificate here already.
            let reasons = OpenSSLErrorQueue.drain()
            if reasons.contains(where: { $0.contains("key values mismatch") }) {
                throw .configuration("private key \(privateKeyPath) does not match certificate \(certificatePath)")
            }
            throw .configuration("loading private key \(privateKeyPath): \(reasons.joined(separator: "; "))")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            _ = OpenSSLErrorQueue.drain()
            throw .configuration("private key \(privateKeyPath) does not match certificate \(certificatePath)")
        }
    }
}
