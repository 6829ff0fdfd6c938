import NIOCore
internal import COpenSSL
internal import CParleyShims

#if canImport(Glibc)
import Glibc
#endif

/// One TLS connection driven through `ByteBufferBIO`: OpenSSL's `SSL` object does the handshake
/// and every record after it. Every call reports `incomplete / complete / failed` instead of
/// touching a socket.
final class TLSConnection: ByteBufferBIO {
    enum HandshakeResult { case complete, incomplete, failed(TLSError) }
    enum ReadResult { case data, wantMore, closeNotify, failed(TLSError) }

    private let ssl: OpaquePointer
    /// The pinned key the verify callback reaches through `SSL_get_app_data` (private sessions only).
    private let pin: PinnedKey?
    let context: TLSContext

    init(
        context: TLSContext, serverHostname: String?, pinnedFingerprint: [UInt8]?,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.raw) else {
            throw .configuration(OpenSSLErrorQueue.describe("SSL_new"))
        }
        self.ssl = ssl
        self.context = context
        self.pin = pinnedFingerprint.map(PinnedKey.init)
        super.init(allocator: allocator)
        // From here on a throw runs deinit, which frees ssl (and the BIO once it is set).
        guard let bio = makeBIO() else { throw .configuration("BIO_new failed") }
        SSL_set_bio(ssl, bio, bio)  // one reference, used for both directions
        if let pin { _ = parley_SSL_set_app_data(ssl, Unmanaged.passUnretained(pin).toOpaque()) }
        if context.isServerSide {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let host = serverHostname {
                try configureHostCheck(ssl, host)
            }
        }
    }

    deinit {
        SSL_free(ssl)  // frees the BIO
    }

    private func configureHostCheck(_ ssl: OpaquePointer, _ host: String) throws(TLSError) {
        if isIPAddress(host) {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                throw .configuration("cannot verify IP address \(host)")
            }
        } else {
            guard SSL_set1_host(ssl, host) == 1, parley_SSL_set_tlsext_host_name(ssl, host) == 1 else {
                throw .configuration("cannot verify host name \(host)")
            }
        }
    }

    func handshake() -> HandshakeResult {
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .complete }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        default:
            return .failed(handshakeError(ssl))
        }
    }

    /// What the handshake negotiated (built once, when it completes: nothing is kept per connection).
    func sessionInfo(exporterLabel: String?) -> TLSSessionInfo {
        let cipher = SSL_get_current_cipher(ssl)
        return TLSSessionInfo(
            protocolVersion: String(cString: SSL_get_version(ssl)),
            cipherSuite: cipher.map { String(cString: SSL_CIPHER_get_name($0)) } ?? "",
            peerFingerprint: SSL_get0_peer_certificate(ssl).map { spkiFingerprint(ofKey: X509_get0_pubkey($0)) },
            exportedSecret: exporterLabel.flatMap { exportKeyingMaterial(label: $0, length: 32) })
    }

    private func handshakeError(_ ssl: OpaquePointer) -> TLSError {
        let reasons = OpenSSLErrorQueue.drain()
        let verify = SSL_get_verify_result(ssl)
        if verify != Int(X509_V_OK) {
            return .certificateVerificationFailed(String(cString: X509_verify_cert_error_string(verify)))
        }
        if reasons.contains(where: { $0.contains("certificate verify failed") }) {
            return .certificateVerificationFailed(reasons.joined(separator: "; "))
        }
        return .handshakeFailed(reasons.isEmpty ? ["peer closed or sent an alert"] : reasons)
    }

    /// Decrypts everything available into `buffer`.
    func read(into buffer: inout ByteBuffer) -> ReadResult {
        var gotData = false
        while true {
            ERR_clear_error()
            // Grow only when the previous read filled the buffer.
            let room = max(buffer.writableBytes, 256)
            var rc: Int32 = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { out in
                rc = SSL_read(ssl, out.baseAddress, Int32(min(out.count, Int(Int32.max))))
                return Int(max(rc, 0))
            }
            if rc > 0 {
                gotData = true
                continue
            }
            switch SSL_get_error(ssl, rc) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return gotData ? .data : .wantMore
            case SSL_ERROR_ZERO_RETURN:
                return .closeNotify
            default:
                let reasons = OpenSSLErrorQueue.drain()
                let verify = SSL_get_verify_result(ssl)
                if verify != Int(X509_V_OK) {
                    return .failed(.certificateVerificationFailed(String(cString: X509_verify_cert_error_string(verify))))
                }
                return .failed(.protocolFailure(reasons.isEmpty ? ["SSL_read failed"] : reasons))
            }
        }
    }

    /// Encrypts all of `plaintext`; the ciphertext waits in the output buffer.
    func write(_ plaintext: ByteBuffer) -> TLSError? {
        var remaining = plaintext
        while remaining.readableBytes > 0 {
            ERR_clear_error()
            let rc = remaining.withUnsafeReadableBytes { bytes in
                SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
            }
            if rc <= 0 {
                return .protocolFailure(OpenSSLErrorQueue.drain().nonEmpty ?? ["SSL_write failed"])
            }
            remaining.moveReaderIndex(forwardBy: Int(rc))
        }
        return nil
    }

    /// Queues our close_notify. Returns true when the peer's close_notify was already seen.
    @discardableResult
    func shutdown() -> Bool {
        ERR_clear_error()
        let rc = SSL_shutdown(ssl)
        _ = OpenSSLErrorQueue.drain()
        return rc == 1
    }

    /// Keying material bound to this session (RFC 8446 exporter), e.g. for a safety code.
    func exportKeyingMaterial(label: String, length: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: length)
        let rc = SSL_export_keying_material(ssl, &out, length, label, label.utf8.count, nil, 0, 0)
        return rc == 1 ? out : nil
    }

    /// Queues a KeyUpdate, sent by the next `handshake()` or `write` (tests of OpenSSL's limits).
    func queueKeyUpdate(requestingReply: Bool) -> Bool {
        SSL_key_update(ssl, requestingReply ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED) == 1
    }
}

func isIPAddress(_ host: String) -> Bool {
    var v4 = in_addr()
    var v6 = in6_addr()
    return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
}

extension Array {
    var nonEmpty: Self? { isEmpty ? nil : self }
}
