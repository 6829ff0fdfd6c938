internal import COpenSSL
internal import CParleyShims

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which side of a TLS connection a context serves, and the material it needs.
public enum TLSRole: Sendable {
    /// A server presenting the leaf certificate in `certificateChainPath` (PEM) with its key.
    case server(certificateChainPath: String, privateKeyPath: String)
    /// A client trusting only the CA certificates in `trustedCAPath` (never the system store).
    case client(trustedCAPath: String)
    /// One end of a private session: presents an in-memory identity and pins the other side.
    case peer(identity: TLSIdentity, accepting: Bool)
}

/// The fixed policy both ends of Parley use: Mozilla's "modern" profile, TLS 1.3 only.
public enum TLSPolicy {
    /// TLS 1.3 suites in preference order.
    public static let cipherSuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
    /// Key-exchange groups.
    public static let groups = "X25519:P-256"
}

/// An OpenSSL `SSL_CTX` configured with Parley's policy. Build it off the event loop: it reads files.
public final class TLSContext: @unchecked Sendable {
    // SSL_CTX is safe to share between threads once configured; it is never mutated after init.
    let raw: OpaquePointer
    /// The role this context was built for.
    public let role: TLSRole

    /// Builds a context, failing closed with a typed error on any problem.
    public init(role: TLSRole) throws(TLSError) {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_method()) else {
            throw .configuration(OpenSSLErrorQueue.describe("SSL_CTX_new"))
        }
        self.raw = ctx
        self.role = role
        // From here on, a throw runs deinit (every stored property is set), which frees ctx.
        try Self.applyPolicy(ctx)
        switch role {
        case .server(let chain, let key):
            try Self.loadServerIdentity(ctx, chainPath: chain, keyPath: key)
        case .client(let caPath):
            try Self.loadTrust(ctx, caPath: caPath)
            parley_SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        case .peer(let identity, let accepting):
            try identity.install(into: ctx)
            // Both ends must present a certificate; the pin, not a CA, decides trust.
            let mode = accepting ? (SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) : SSL_VERIFY_PEER
            parley_SSL_CTX_set_verify(ctx, mode, pinningVerifyCallback)
        }
    }

    deinit {
        SSL_CTX_free(raw)
    }

    private static func applyPolicy(_ ctx: OpaquePointer) throws(TLSError) {
        guard parley_SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1,
            parley_SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1
        else { throw .configuration(OpenSSLErrorQueue.describe("set TLS 1.3 only")) }
        guard SSL_CTX_set_ciphersuites(ctx, TLSPolicy.cipherSuites) == 1 else {
            throw .configuration(OpenSSLErrorQueue.describe("SSL_CTX_set_ciphersuites"))
        }
        guard parley_SSL_CTX_set1_groups_list(ctx, TLSPolicy.groups) == 1 else {
            throw .configuration(OpenSSLErrorQueue.describe("SSL_CTX_set1_groups_list"))
        }
        let options =
            parley_SSL_OP_NO_COMPRESSION() | parley_SSL_OP_NO_RENEGOTIATION() | parley_SSL_OP_NO_TICKET()
            | parley_SSL_OP_CIPHER_SERVER_PREFERENCE()
        _ = SSL_CTX_set_options(ctx, options)
        // No resumption of any kind: no tickets, no session cache, no early data.
        _ = SSL_CTX_set_num_tickets(ctx, 0)
        _ = parley_SSL_CTX_set_session_cache_mode(ctx, parley_SSL_SESS_CACHE_OFF())
        _ = SSL_CTX_set_max_early_data(ctx, 0)
        // Idle connections give back their ~34 KB of record buffers.
        _ = parley_SSL_CTX_set_mode(ctx, parley_SSL_MODE_RELEASE_BUFFERS())
    }

    private static func loadServerIdentity(_ ctx: OpaquePointer, chainPath: String, keyPath: String) throws(TLSError) {
        try checkKeyPermissions(keyPath)
        guard SSL_CTX_use_certificate_chain_file(ctx, chainPath) == 1 else {
            throw .configuration(OpenSSLErrorQueue.describe("loading certificate \(chainPath)"))
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyPath, SSL_FILETYPE_PEM) == 1 else {
            throw .configuration(OpenSSLErrorQueue.describe("loading private key \(keyPath)"))
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw .configuration("private key \(keyPath) does not match certificate \(chainPath)")
        }
    }

    private static func loadTrust(_ ctx: OpaquePointer, caPath: String) throws(TLSError) {
        guard access(caPath, R_OK) == 0 else {
            throw .configuration("cannot read CA certificate \(caPath)")
        }
        guard SSL_CTX_load_verify_locations(ctx, caPath, nil) == 1 else {
            throw .configuration(OpenSSLErrorQueue.describe("loading CA certificate \(caPath)"))
        }
    }

    /// Refuses a key file that group or others can read (fail closed).
    public static func checkKeyPermissions(_ path: String) throws(TLSError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw .configuration("cannot read private key \(path)")
        }
        let mode = UInt32(info.st_mode) & 0o777
        if mode & 0o077 != 0 {
            throw .insecureKeyPermissions(path: path, mode: mode)
        }
    }

    /// Narrows the TLS 1.3 suites this context offers (tests of each suite); true on success.
    func restrictCipherSuites(_ suites: String) -> Bool {
        SSL_CTX_set_ciphersuites(raw, suites) == 1
    }

    var isPeer: Bool {
        if case .peer = role { return true }
        return false
    }

    var isServerSide: Bool {
        switch role {
        case .server: return true
        case .client: return false
        case .peer(_, let accepting): return accepting
        }
    }
}
