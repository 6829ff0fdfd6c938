// The TLS 1.3 record layer after the handshake (RFC 8446 §5), for server connections: OpenSSL
// runs the handshake, hands over the application traffic secrets, and its `SSL` object (13.5 KiB
// per connection, most of an idle client's memory) is freed. What is left is small and strict:
// application data, close_notify, KeyUpdate; anything else ends the connection with an alert.
// No NIO here: TLSConnection feeds it bytes, and the fuzzer builds it with OpenSSL alone.

/// TLS alert descriptions Parley sends or recognises (RFC 8446 §6).
enum TLSAlert: UInt8, Sendable {
    case closeNotify = 0
    case unexpectedMessage = 10
    case badRecordMAC = 20
    case recordOverflow = 22
    case illegalParameter = 47
    case decodeError = 50
    case internalError = 80
    case userCanceled = 90
}

/// Record protection for both directions of one established TLS 1.3 connection.
struct TLS13Records {
    static let headerLength = 5
    /// Largest plaintext in one record (2^14).
    static let maxPlaintext = 16_384
    /// Largest encrypted record body a peer may send (2^14 + 256).
    static let maxCiphertext = maxPlaintext + 256
    /// Our write key is rotated well before AES-GCM's limit of 2^24.5 records per key (§5.5).
    static let writeKeyLifetime: UInt64 = 1 << 23
    /// Per record: header, inner content type, tag.
    static let overhead = headerLength + 1 + RecordSuite.tagLength

    private static let applicationData: UInt8 = 23
    private static let alert: UInt8 = 21
    private static let handshake: UInt8 = 22
    private static let keyUpdate: UInt8 = 24

    private var read: TrafficKeys
    private var write: TrafficKeys
    /// The peer asked for our KeyUpdate: it goes out before our next application data (§4.6.3),
    /// once however many requests came (so requests cannot pile up replies).
    private(set) var keyUpdateOwed = false

    /// Nil when the keys cannot be derived (the caller then keeps OpenSSL's record layer).
    init?(suite: RecordSuite, readSecret: [UInt8], writeSecret: [UInt8]) {
        guard let read = TrafficKeys(suite: suite, secret: readSecret),
            let write = TrafficKeys(suite: suite, secret: writeSecret)
        else { return nil }
        self.read = read
        self.write = write
    }

    mutating func wipe() {
        read.wipe()
        write.wipe()
    }

    // MARK: inbound

    /// What the start of the inbound stream holds.
    enum Header: Equatable {
        /// A whole record of this many bytes (header included) is available.
        case complete(Int)
        /// More bytes are needed.
        case incomplete
        /// Not a record a TLS 1.3 peer may send after the handshake.
        case invalid(TLSAlert, String)
    }

    static func inspect(_ bytes: UnsafeRawBufferPointer) -> Header {
        guard bytes.count >= headerLength else { return .incomplete }
        // After the handshake every record is protected, so its outer type is application_data;
        // a change_cipher_spec is allowed only during the handshake (§5).
        guard bytes[0] == applicationData else {
            return .invalid(.unexpectedMessage, "unexpected record type \(bytes[0]) after the handshake")
        }
        let length = Int(bytes[3]) << 8 | Int(bytes[4])
        guard length <= maxCiphertext else {
            return .invalid(.recordOverflow, "record of \(length) bytes exceeds 2^14 + 256")
        }
        guard length > RecordSuite.tagLength else {
            return .invalid(.badRecordMAC, "record of \(length) bytes is too short to be protected")
        }
        return bytes.count >= headerLength + length ? .complete(headerLength + length) : .incomplete
    }

    /// What one opened record meant.
    enum Opened: Equatable {
        /// This many bytes of application data are at the start of the output.
        case data(Int)
        /// A record with no data for the application (KeyUpdate handled, empty data, user_canceled).
        case nothing
        /// The peer's close_notify.
        case closeNotify
        /// The connection must end, with this alert to the peer (none when the peer sent one).
        case failed(TLSAlert?, String)
    }

    /// Opens one whole record (as `inspect` measured it) into `output`, which must hold at least
    /// the record's length.
    mutating func open(record: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Opened {
        precondition(record.count > Self.headerLength && output.count >= record.count - Self.headerLength)
        guard read.sequence < UInt64.max else { return .failed(.unexpectedMessage, "read sequence exhausted") }
        let header = UnsafeRawBufferPointer(rebasing: record[0..<Self.headerLength])
        let body = UnsafeRawBufferPointer(rebasing: record[Self.headerLength...])
        guard let innerLength = read.open(header: header, ciphertext: body, into: output) else {
            return .failed(.badRecordMAC, "record failed authentication")
        }
        guard innerLength <= Self.maxPlaintext + 1 else {
            return .failed(.recordOverflow, "record plaintext exceeds 2^14 bytes")
        }
        // The content type is the last non-zero byte; zeros after it are padding (§5.4).
        var end = innerLength
        while end > 0, output[end - 1] == 0 { end -= 1 }
        guard end > 0 else { return .failed(.unexpectedMessage, "record has no content type") }
        let type = output[end - 1]
        let content = end - 1
        switch type {
        case Self.applicationData:
            return content == 0 ? .nothing : .data(content)
        case Self.alert:
            guard content == 2 else { return .failed(.decodeError, "malformed alert") }
            switch output[1] {
            case TLSAlert.closeNotify.rawValue: return .closeNotify
            case TLSAlert.userCanceled.rawValue: return .nothing
            case let description:
                return .failed(nil, "peer sent alert \(description)")
            }
        case Self.handshake:
            return keyUpdate(UnsafeRawBufferPointer(rebasing: output[0..<content]))
        default:
            return .failed(.unexpectedMessage, "unexpected content type \(type)")
        }
    }

    /// Post-handshake messages: only KeyUpdate is acceptable from a client that was offered
    /// neither tickets nor post-handshake authentication, and it must end its record (§5.1): so a
    /// handshake record holds exactly one KeyUpdate, or the connection ends.
    private mutating func keyUpdate(_ bytes: UnsafeRawBufferPointer) -> Opened {
        guard bytes.count >= 4, bytes[0] == Self.keyUpdate else {
            return .failed(.unexpectedMessage, "unexpected post-handshake message")
        }
        guard bytes[1] == 0, bytes[2] == 0, bytes[3] == 1, bytes.count >= 5 else {
            return .failed(.decodeError, "malformed KeyUpdate")
        }
        guard bytes.count == 5 else { return .failed(.unexpectedMessage, "data after a KeyUpdate in its record") }
        guard bytes[4] <= 1 else { return .failed(.illegalParameter, "KeyUpdate request_update \(bytes[4])") }
        guard read.update() else { return .failed(.internalError, "KeyUpdate derivation failed") }
        if bytes[4] == 1 { keyUpdateOwed = true }
        return .nothing
    }

    // MARK: outbound

    /// A KeyUpdate record: header, 4-byte message header, 1-byte request, type byte, tag.
    static let keyUpdateRecordLength = overhead + 5

    /// The most bytes `seal` writes for `count` bytes of plaintext (room for a KeyUpdate included).
    static func sealedLength(_ count: Int) -> Int {
        let records = max(1, (count + maxPlaintext - 1) / maxPlaintext)
        return count + records * overhead + keyUpdateRecordLength
    }

    /// Whether our write key is due for rotation.
    var writeKeyExpired: Bool { write.sequence >= Self.writeKeyLifetime }

    /// Seals `plaintext` as application data in full records into `output` (at least
    /// `sealedLength(plaintext.count)` bytes), after a KeyUpdate when one is owed or our key is
    /// old. Returns the bytes written, or nil on failure.
    mutating func seal(_ plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> Int? {
        precondition(output.count >= Self.sealedLength(plaintext.count))
        var written = 0
        if keyUpdateOwed || writeKeyExpired {
            guard let n = sealKeyUpdate(requestingUpdate: false, into: output) else { return nil }
            keyUpdateOwed = false
            written = n
        }
        var offset = 0
        repeat {
            let count = min(Self.maxPlaintext, plaintext.count - offset)
            let chunk = UnsafeRawBufferPointer(rebasing: plaintext[offset..<offset + count])
            guard let n = sealRecord(type: Self.applicationData, chunk, into: output, at: written) else { return nil }
            written += n
            offset += count
        } while offset < plaintext.count
        return written
    }

    /// An alert record (close_notify is a warning; everything else Parley sends is fatal).
    mutating func sealAlert(_ alert: TLSAlert) -> [UInt8] {
        sealControl(type: Self.alert, [alert == .closeNotify ? 1 : 2, alert.rawValue])
    }

    /// Seals a KeyUpdate under the current write key at the start of `output`, then switches to
    /// the next key. Nil if sealing or the derivation failed: the connection must end then.
    /// (`requestingUpdate` is for tests, which play the peer that asks.)
    mutating func sealKeyUpdate(requestingUpdate: Bool, into output: UnsafeMutableRawBufferPointer) -> Int? {
        let message: [UInt8] = [Self.keyUpdate, 0, 0, 1, requestingUpdate ? 1 : 0]
        let n = message.withUnsafeBytes { sealRecord(type: Self.handshake, $0, into: output, at: 0) }
        guard let n, write.update() else { return nil }
        return n
    }

    private mutating func sealControl(type: UInt8, _ content: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.sealedLength(content.count))
        let n = content.withUnsafeBytes { content in
            out.withUnsafeMutableBytes { sealRecord(type: type, content, into: $0, at: 0) }
        }
        return Array(out[0..<(n ?? 0)])
    }

    /// Seals one record of `type` (internal for the fuzzer, which seals arbitrary inner plaintext).
    mutating func sealRecord(
        type: UInt8, _ content: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, at start: Int
    ) -> Int? {
        let bodyLength = content.count + 1 + RecordSuite.tagLength
        precondition(output.count >= start + Self.headerLength + bodyLength)
        let record = UnsafeMutableRawBufferPointer(rebasing: output[start..<start + Self.headerLength + bodyLength])
        record[0] = Self.applicationData
        record[1] = 0x03
        record[2] = 0x03
        record[3] = UInt8(bodyLength >> 8)
        record[4] = UInt8(bodyLength & 0xff)
        let header = UnsafeRawBufferPointer(rebasing: record[0..<Self.headerLength])
        let body = UnsafeMutableRawBufferPointer(rebasing: record[Self.headerLength...])
        guard write.seal(header: header, content: content, type: type, into: body) else { return nil }
        return record.count
    }
}
