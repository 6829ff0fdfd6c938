/// A parsed JSON value. Floating-point numbers are deliberately not representable: the protocol
/// only carries integers, so the reader rejects `1.5`, `1e3` and `-0.0` as malformed.
public enum JSONValue: Sendable, Hashable {
    case object([String: JSONValue])
    case array([JSONValue])
    case string(String)
    case integer(Int64)
    case bool(Bool)
    case null

    /// The members when this is an object.
    public var objectValue: [String: JSONValue]? {
        if case .object(let members) = self { return members }
        return nil
    }

    /// The string when this is a string.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The integer when this is an integer.
    public var integerValue: Int64? {
        if case .integer(let i) = self { return i }
        return nil
    }

    /// The bool when this is a bool.
    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
}

/// Why the JSON reader refused its input, with the byte offset where it gave up.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A short human explanation, e.g. "invalid UTF-8 in string".
    public var reason: String
    /// Byte offset into the input.
    public var offset: Int

    public init(_ reason: String, at offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "\(reason) at byte \(offset)" }
}
