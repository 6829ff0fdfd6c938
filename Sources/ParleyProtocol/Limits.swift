/// Wire and content limits shared by the server, the client and the tests.
public enum Limits {
    /// The protocol version this module speaks; `hello` announces it and `login` must match it.
    public static let protocolVersion: Int64 = 1
    /// Longest accepted frame, in bytes, excluding the terminating `\n` (and optional `\r`).
    public static let maxFrameBytes = 65_536
    /// Deepest nesting of objects/arrays the JSON reader accepts; messages are flat, so 8 is generous.
    public static let maxJSONDepth = 8
    /// Username length bounds, in characters (all ASCII, so also bytes).
    public static let usernameLength = 1...32
    /// Password length bounds, in UTF-8 bytes.
    public static let passwordBytes = 8...1024
    /// Message text length bounds, in UTF-8 bytes.
    public static let textBytes = 1...4096
}
