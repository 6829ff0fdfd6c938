/// A frame on a direct peer-to-peer private connection (never sent to or through the server).
/// Same framing as the server protocol: one JSON object per line. See docs/PROTOCOL.md.
public enum PrivateFrame: Sendable, Hashable {
    /// The connecting side's first frame: the session id the server handed out for this pair.
    case open(session: String)
    /// The accepting side's first frame, after it redeemed the session id: the session is open.
    case welcome
    /// A private chat message.
    case text(String)
    /// The sender is ending the session (stopprivate, logout, timeout, block), with a short reason.
    case bye(reason: String)

    /// Appends this frame, newline included.
    public func encode<Out: JSONOutput>(to out: inout Out) {
        switch self {
        case .open(let session):
            out.beginObject(type: "open")
            out.field("session", session)
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
        case "open": return .open(session: try f.string("session"))
        case "welcome": return .welcome
        case "text": return .text(try f.string("text"))
        case "bye": return .bye(reason: try f.string("reason"))
        default: throw ProtocolError(.unknownType, "unknown private frame type '\(type)'")
        }
    }
}
