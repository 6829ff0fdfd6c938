internal import COpenSSL
internal import CParleyShims
import ParleyCrypto

/// A private key and its certificate held in memory (private sessions, and certificates made for tests).
public final class TLSIdentity: @unchecked Sendable {
    // Immutable after init; OpenSSL allows concurrent read-only use of EVP_PKEY and X509.
    let key: OpaquePointer
    let certificate: OpaquePointer

    init(key: OpaquePointer, certificate: OpaquePointer) {
        self.key = key
        self.certificate = certificate
    }

    deinit {
        X509_free(certificate)
        EVP_PKEY_free(key)
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: what a peer pins.
    public var fingerprint: [UInt8] { spkiFingerprint(ofKey: X509_get0_pubkey(certificate)) }

    /// The certificate in PEM form.
    public func certificatePEM() -> String {
        pem { bio in PEM_write_bio_X509(bio, certificate) }
    }

    /// The private key in PEM form (PKCS#8, unencrypted): only for writing files made for tests.
    public func privateKeyPEM() -> String {
        pem { bio in PEM_write_bio_PrivateKey(bio, key, nil, nil, 0, nil, nil) }
    }

    func install(into ctx: OpaquePointer) throws(TLSError) {
        guard SSL_CTX_use_certificate(ctx, certificate) == 1, SSL_CTX_use_PrivateKey(ctx, key) == 1 else {
            throw .configuration(OpenSSLErrorQueue.describe("installing in-memory identity"))
        }
    }

    private func pem(_ write: (OpaquePointer) -> Int32) -> String {
        let bio = BIO_new(BIO_s_mem())!
        defer { BIO_free(bio) }
        _ = write(bio)
        var data: UnsafeMutablePointer<CChar>? = nil
        let length = parley_BIO_get_mem_data(bio, &data)
        guard let data, length > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }
}

/// SHA-256 over the DER encoding of a public key's SubjectPublicKeyInfo.
func spkiFingerprint(ofKey key: OpaquePointer?) -> [UInt8] {
    guard let key else { return [] }
    var der: UnsafeMutablePointer<UInt8>? = nil
    let length = i2d_PUBKEY(key, &der)
    guard length > 0, let der else { return [] }
    defer { parley_OPENSSL_free(der) }
    return SHA256.digest(Array(UnsafeBufferPointer(start: der, count: Int(length))))
}

/// Makes keys and X.509 certificates in memory: ephemeral peer identities, and CAs for tests.
public enum CertificateFactory {
    /// What a certificate is for.
    public enum Kind: Sendable {
        case certificateAuthority
        case server(dnsNames: [String], ipAddresses: [String])
        case peer
    }

    /// A fresh P-256 key and a certificate, self-signed or signed by `issuer`.
    /// `notBefore`/`notAfter` are offsets in seconds from now (negative values make expired certificates).
    public static func make(
        commonName: String,
        kind: Kind,
        issuer: TLSIdentity? = nil,
        notBefore: Int = -60,
        notAfter: Int = 90 * 86_400
    ) throws(TLSError) -> TLSIdentity {
        ERR_clear_error()
        guard let key = parley_generate_p256_key() else {
            throw .configuration(OpenSSLErrorQueue.describe("EC P-256 key generation"))
        }
        guard let cert = X509_new() else {
            EVP_PKEY_free(key)
            throw .configuration(OpenSSLErrorQueue.describe("X509_new"))
        }
        do {
            try build(cert, key: key, commonName: commonName, kind: kind, issuer: issuer, notBefore: notBefore, notAfter: notAfter)
        } catch {
            X509_free(cert)
            EVP_PKEY_free(key)
            throw error
        }
        return TLSIdentity(key: key, certificate: cert)
    }

    private static func build(
        _ cert: OpaquePointer, key: OpaquePointer, commonName: String, kind: Kind,
        issuer: TLSIdentity?, notBefore: Int, notAfter: Int
    ) throws(TLSError) {
        func check(_ ok: Bool, _ what: String) throws(TLSError) {
            if !ok { throw .configuration(OpenSSLErrorQueue.describe(what)) }
        }
        try check(X509_set_version(cert, 2) == 1, "X509_set_version")
        let serial = BN_new()!
        defer { BN_free(serial) }
        try check(BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) == 1, "BN_rand")
        try check(BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) != nil, "serial number")
        try check(X509_gmtime_adj(X509_getm_notBefore(cert), notBefore) != nil, "notBefore")
        try check(X509_gmtime_adj(X509_getm_notAfter(cert), notAfter) != nil, "notAfter")
        try check(X509_set_pubkey(cert, key) == 1, "X509_set_pubkey")
        let name = X509_get_subject_name(cert)
        try check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, commonName, -1, -1, 0) == 1, "subject CN")
        let issuerCert = issuer?.certificate ?? cert
        try check(X509_set_issuer_name(cert, X509_get_subject_name(issuerCert)) == 1, "issuer name")

        var extensions: [(Int32, String)] = []
        switch kind {
        case .certificateAuthority:
            extensions = [
                (NID_basic_constraints, "critical,CA:TRUE,pathlen:0"),
                (NID_key_usage, "critical,keyCertSign,cRLSign"),
                (NID_subject_key_identifier, "hash"),
            ]
        case .server(let dnsNames, let ips):
            let sans = dnsNames.map { "DNS:\($0)" } + ips.map { "IP:\($0)" }
            extensions = [
                (NID_basic_constraints, "critical,CA:FALSE"),
                (NID_key_usage, "critical,digitalSignature"),
                (NID_ext_key_usage, "serverAuth"),
            ]
            if !sans.isEmpty { extensions.append((NID_subject_alt_name, sans.joined(separator: ","))) }
        case .peer:
            extensions = [
                (NID_basic_constraints, "critical,CA:FALSE"),
                (NID_key_usage, "critical,digitalSignature"),
                (NID_ext_key_usage, "serverAuth,clientAuth"),
            ]
        }
        var v3 = X509V3_CTX()
        X509V3_set_ctx(&v3, issuerCert, cert, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &v3, nid, value) else {
                throw .configuration(OpenSSLErrorQueue.describe("extension \(value)"))
            }
            defer { X509_EXTENSION_free(ext) }
            try check(X509_add_ext(cert, ext, -1) == 1, "X509_add_ext")
        }
        let signingKey = issuer?.key ?? key
        try check(X509_sign(cert, signingKey, EVP_sha256()) > 0, "X509_sign")
    }
}
