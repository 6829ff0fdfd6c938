/// A frame on a direct peer-to-peer private connection (never sent to or through the server).
/// Same framing as the server protocol: one JSON object per line. See docs/PROTOCOL.md.
public enum PrivateFrame: Sendable, Hashable {
    /// The connecting side's first frame: the session id the server handed out for this pair.
    case open(linkID: String)
    /// The connecting side's second frame: SHA-256 commitment to its random value (bound to the TLS exporter).
    case commit(SafetyValue)
    /// The accepting side's answer to `commit`: its own random value.
    case nonce(SafetyValue)
    /// The connecting side's answer to `nonce`: the random value it committed to.
    case reveal(SafetyValue)
    /// The accepting side's last handshake frame, after the reveal checked out: the session is open.
    case welcome
    /// A private chat message.
    case text(String)
    /// The sender is ending the session (stopprivate, logout, timeout, block), with a short reason.
    case bye(reason: String)

    /// The wire `type`, for messages about a frame out of place.
    public var typeName: String {
        switch self {
        case .open: "open"
        case .commit: "commit"
        case .nonce: "nonce"
        case .reveal: "reveal"
        case .welcome: "welcome"
        case .text: "text"
        case .bye: "bye"
        }
    }

    /// Appends this frame, newline included.
    public func encode<Out: JSONOutput>(to out: inout Out) {
        switch self {
        case .open(let linkID):
            out.beginObject(type: "open")
            out.field("session", linkID)
        case .commit(let commitment):
            out.beginObject(type: "commit")
            out.field("commitment", commitment.hex)
        case .nonce(let nonce):
            out.beginObject(type: "nonce")
            out.field("nonce", nonce.hex)
        case .reveal(let nonce):
            out.beginObject(type: "reveal")
            out.field("nonce", nonce.hex)
        case .welcome:
            out.beginObject(type: "welcome")
        case .text(let text):
            out.beginObject(type: "text")
            out.field("text", text)
        case .bye(let reason):
            out.beginObject(type: "bye")
            out.field("reason", reason)
        }
        out.endFrame()
    }

    /// Decodes one frame (without its newline).
    public static func decode(bytes: UnsafeRawBufferPointer) throws(ProtocolError) -> PrivateFrame {
        let (f, type) = try parseFrameObject(bytes)
        switch type {
        case "open": return .open(linkID: try f.string("session"))
        case "commit": return .commit(try f.safetyValue("commitment"))
        case "nonce": return .nonce(try f.safetyValue("nonce"))
        case "reveal": return .reveal(try f.safetyValue("nonce"))
        case "welcome": return .welcome
        case "text": return .text(try f.string("text"))
        case "bye": return .bye(reason: try f.string("reason"))
        default: throw ProtocolError(.unknownType, "unknown private frame type '\(type)'")
        }
    }
}

/// Exactly 32 bytes of the safety-code exchange (a commitment or a random value); on the wire,
/// exactly 64 lowercase hex digits, so every value has one spelling and re-encodes byte for byte.
public struct SafetyValue: Sendable, Hashable, CustomStringConvertible {
    /// Length in bytes (a SHA-256 digest, and the size of each random value).
    public static let byteCount = 32

    /// The 32 bytes.
    public let bytes: [UInt8]

    /// Nil unless `bytes` has exactly `byteCount` bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Self.byteCount else { return nil }
        self.bytes = bytes
    }

    /// Nil unless `hex` is exactly 64 lowercase hex digits.
    public init?(hex: String) {
        let digits = Array(hex.utf8)
        guard digits.count == Self.byteCount * 2 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(Self.byteCount)
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let high = Self.nibble(digits[i]), let low = Self.nibble(digits[i + 1]) else { return nil }
            out.append(high << 4 | low)
        }
        bytes = out
    }

    /// The 64 lowercase hex digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    // Lowercase only: uppercase would give a second spelling of the same value.
    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        default: nil
        }
    }
}

extension Fields {
    func safetyValue(_ name: String) throws(ProtocolError) -> SafetyValue {
        guard let value = SafetyValue(hex: try string(name)) else {
            throw ProtocolError(.badFrame, "expected 64 lowercase hex digits for field '\(name)'", id: id)
        }
        return value
    }
}
