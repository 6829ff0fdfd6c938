import NIOCore
internal import COpenSSL
internal import CParleyShims

#if canImport(Glibc)
import Glibc
#endif

/// One TLS connection driven through `ByteBufferBIO`: OpenSSL's `SSL` object for the handshake,
/// and afterwards either OpenSSL or, on server connections, `TLS13Records` (the `SSL` object is
/// then freed). Every call reports `incomplete / complete / failed` instead of touching a socket.
final class TLSConnection {
    enum HandshakeResult { case complete, incomplete, failed(TLSError) }
    enum ReadResult { case data, wantMore, closeNotify, failed(TLSError) }

    private var ssl: OpaquePointer?
    private var records: TLS13Records?
    private let io: ByteBufferBIO
    private let hooks: ConnectionHooks
    private var peerClosed = false
    /// Our close_notify is out: nothing more is sealed (§6.1).
    private var sentCloseNotify = false
    let context: TLSContext
    /// What the handshake negotiated, kept once the `SSL` object is gone.
    private(set) var cipherSuite = ""
    private(set) var protocolVersion = ""
    private(set) var peerFingerprint: [UInt8]?

    init(
        context: TLSContext, serverHostname: String?, pinnedFingerprint: [UInt8]?,
        allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.raw) else {
            throw .configuration(OpenSSLErrorQueue.describe("SSL_new"))
        }
        let io = ByteBufferBIO(allocator: allocator)
        guard let rbio = io.makeBIO(), let wbio = io.makeBIO() else {
            SSL_free(ssl)
            throw .configuration("BIO_new failed")
        }
        SSL_set_bio(ssl, rbio, wbio)
        self.ssl = ssl
        self.io = io
        self.context = context
        self.hooks = ConnectionHooks(pin: pinnedFingerprint)
        _ = parley_SSL_set_app_data(ssl, Unmanaged.passUnretained(hooks).toOpaque())
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
        if let ssl { SSL_free(ssl) }  // frees both BIOs
        records?.wipe()
        hooks.wipe()
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

    /// Hands ciphertext from the network over (no copy: it is read from this buffer).
    func receive(_ buffer: inout ByteBuffer) {
        io.receive(&buffer)
    }

    func handshake() -> HandshakeResult {
        guard let ssl else { return .complete }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            completeHandshake(ssl)
            return .complete
        }
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        default:
            return .failed(handshakeError(ssl))
        }
    }

    private func completeHandshake(_ ssl: OpaquePointer) {
        protocolVersion = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl)
        cipherSuite = cipher.map { String(cString: SSL_CIPHER_get_name($0)) } ?? ""
        peerFingerprint = SSL_get0_peer_certificate(ssl).map { spkiFingerprint(ofKey: X509_get0_pubkey($0)) }
        // Hand the record layer over only in the state it is known in: TLS 1.3 with a suite we
        // implement, both secrets seen, and nothing OpenSSL has read but not yet returned.
        guard context.recordLayer == .parley, context.isServerSide, !context.isPeer,
            let cipher, let suite = RecordSuite(rawValue: UInt16(truncatingIfNeeded: SSL_CIPHER_get_protocol_id(cipher))),
            SSL_version(ssl) == TLS1_3_VERSION, SSL_has_pending(ssl) == 0,
            let clientSecret = hooks.clientTrafficSecret, let serverSecret = hooks.serverTrafficSecret,
            clientSecret.count == suite.hashLength, serverSecret.count == suite.hashLength,
            let records = TLS13Records(suite: suite, readSecret: clientSecret, writeSecret: serverSecret)
        else {
            hooks.wipe()
            return
        }
        self.records = records
        hooks.wipe()
        SSL_free(ssl)  // the BIOs go with it; `io` keeps any bytes already received or produced
        self.ssl = nil
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
        if records != nil { return readRecords(into: &buffer) }
        guard let ssl else { return .failed(.protocolFailure(["connection is closed"])) }
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
                peerClosed = true
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

    private func readRecords(into buffer: inout ByteBuffer) -> ReadResult {
        var gotData = false
        while var inbound = io.inbound, !peerClosed {
            let header = inbound.withUnsafeReadableBytes { TLS13Records.inspect($0) }
            let length: Int
            switch header {
            case .incomplete:
                return gotData ? .data : .wantMore
            case .invalid(let alert, let why):
                return fail(alert, why)
            case .complete(let n):
                length = n
            }
            var opened = TLS13Records.Opened.nothing
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { out in
                opened = inbound.withUnsafeReadableBytes { bytes in
                    records!.open(record: UnsafeRawBufferPointer(rebasing: bytes[0..<length]), into: out)
                }
                if case .data(let n) = opened { return n }
                return 0
            }
            inbound.moveReaderIndex(forwardBy: length)
            // Drop the reference once consumed, so the socket's buffer is not kept while idle.
            io.inbound = inbound.readableBytes > 0 ? inbound : nil
            switch opened {
            case .data: gotData = true
            case .nothing: continue
            case .closeNotify:
                peerClosed = true
                return .closeNotify
            case .failed(let alert, let why):
                return fail(alert, why)
            }
        }
        return gotData ? .data : .wantMore
    }

    /// Queues a fatal alert (the handler sends it before closing) and ends the record layer.
    private func fail(_ alert: TLSAlert?, _ why: String) -> ReadResult {
        if let alert, records != nil, !sentCloseNotify { io.writeOutbound(records!.sealAlert(alert)) }
        records?.wipe()
        records = nil
        return .failed(.protocolFailure([why]))
    }

    /// Encrypts all of `plaintext`; the ciphertext waits in the output buffer.
    func write(_ plaintext: ByteBuffer) -> TLSError? {
        if records != nil { return writeRecords(plaintext) }
        guard let ssl else { return .protocolFailure(["connection is closed"]) }
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

    private func writeRecords(_ plaintext: ByteBuffer) -> TLSError? {
        guard plaintext.readableBytes > 0 else { return nil }
        guard !sentCloseNotify else { return .protocolFailure(["write after close_notify"]) }
        let sealed = io.appendOutbound(maximumBytes: TLS13Records.sealedLength(plaintext.readableBytes)) { out in
            plaintext.withUnsafeReadableBytes { records!.seal($0, into: out) }
        }
        if sealed { return nil }
        // Sequence numbers moved for records now thrown away: this record layer is done.
        records?.wipe()
        records = nil
        return .protocolFailure(OpenSSLErrorQueue.drain().nonEmpty ?? ["record encryption failed"])
    }

    /// Queues our close_notify. Returns true when the peer's close_notify was already seen.
    @discardableResult
    func shutdown() -> Bool {
        if records != nil {
            if !sentCloseNotify {
                sentCloseNotify = true
                io.writeOutbound(records!.sealAlert(.closeNotify))
            }
            return peerClosed
        }
        guard let ssl else { return peerClosed }
        ERR_clear_error()
        let rc = SSL_shutdown(ssl)
        _ = OpenSSLErrorQueue.drain()
        return rc == 1
    }

    /// Takes the ciphertext produced so far, if any.
    func takeOutbound() -> ByteBuffer? {
        io.takeOutbound()
    }

    /// Keying material bound to this session (RFC 8446 exporter), e.g. for a safety code. Only
    /// while OpenSSL still holds the session (private sessions always do).
    func exportKeyingMaterial(label: String, length: Int) -> [UInt8]? {
        guard let ssl else { return nil }
        var out = [UInt8](repeating: 0, count: length)
        let rc = SSL_export_keying_material(ssl, &out, length, label, label.utf8.count, nil, 0, 0)
        return rc == 1 ? out : nil
    }

    /// Whether `TLS13Records` carries this connection's records (tests and logs).
    var usesParleyRecordLayer: Bool { records != nil }

    /// Asks OpenSSL to send a KeyUpdate requesting one back (tests of the server's record layer).
    func requestKeyUpdate() -> Bool {
        guard let ssl else { return false }
        return SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) == 1
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
