/// Shared content rules for usernames, passwords, message text and fingerprints.
///
/// Usernames: 1-32 ASCII characters from `A-Z a-z 0-9 _ - .`, starting with a letter or digit.
/// They are unique case-insensitively: `canonicalUsername` (ASCII lowercase) is the identity key,
/// while the spelling given at registration is what others see.
public enum Validation {
    /// Whether `name` satisfies the username rule.
    public static func isValidUsername(_ name: String) -> Bool {
        let utf8 = name.utf8
        guard Limits.usernameLength.contains(utf8.count), let first = utf8.first, isAlnum(first) else { return false }
        return utf8.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") }
    }

    /// The identity key for a (valid) username: ASCII lowercased.
    public static func canonicalUsername(_ name: String) -> String {
        String(decoding: name.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
    }

    /// Whether `password` is 8...1024 bytes of UTF-8 (any characters allowed).
    public static func isValidPassword(_ password: String) -> Bool {
        Limits.passwordBytes.contains(password.utf8.count)
    }

    /// Whether `text` is a sendable chat message: 1...4096 UTF-8 bytes.
    public static func isValidText(_ text: String) -> Bool {
        Limits.textBytes.contains(text.utf8.count)
    }

    /// Whether `hex` looks like a SHA-256 fingerprint: exactly 64 lowercase hex digits.
    public static func isValidFingerprint(_ hex: String) -> Bool {
        hex.utf8.count == 64 && hex.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    private static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }
}

/// Typed access to an object's members that turns absence or a wrong type into `bad_frame`.
struct Fields {
    let members: [String: JSONValue]
    let id: Int64?

    private func bad(_ field: String, _ problem: String) -> ProtocolError {
        ProtocolError(.badFrame, "\(problem) field '\(field)'", id: id)
    }

    func string(_ name: String) throws(ProtocolError) -> String {
        guard let v = members[name] else { throw bad(name, "missing") }
        guard case .string(let s) = v else { throw bad(name, "expected a string for") }
        return s
    }

    func optionalString(_ name: String) throws(ProtocolError) -> String? {
        guard let v = members[name], v != .null else { return nil }
        guard case .string(let s) = v else { throw bad(name, "expected a string for") }
        return s
    }

    func integer(_ name: String) throws(ProtocolError) -> Int64 {
        guard let v = members[name] else { throw bad(name, "missing") }
        guard case .integer(let i) = v else { throw bad(name, "expected an integer for") }
        return i
    }

    func optionalInteger(_ name: String) throws(ProtocolError) -> Int64? {
        guard let v = members[name], v != .null else { return nil }
        guard case .integer(let i) = v else { throw bad(name, "expected an integer for") }
        return i
    }

    func bool(_ name: String) throws(ProtocolError) -> Bool {
        guard let v = members[name] else { throw bad(name, "missing") }
        guard case .bool(let b) = v else { throw bad(name, "expected a bool for") }
        return b
    }

    func optionalBool(_ name: String) throws(ProtocolError) -> Bool? {
        guard let v = members[name], v != .null else { return nil }
        guard case .bool(let b) = v else { throw bad(name, "expected a bool for") }
        return b
    }

    func stringArray(_ name: String) throws(ProtocolError) -> [String] {
        guard let v = members[name] else { throw bad(name, "missing") }
        guard case .array(let elements) = v else { throw bad(name, "expected an array of strings for") }
        var out: [String] = []
        out.reserveCapacity(elements.count)
        for e in elements {
            guard case .string(let s) = e else { throw bad(name, "expected an array of strings for") }
            out.append(s)
        }
        return out
    }

    func nonNegative(_ name: String) throws(ProtocolError) -> Int64 {
        let v = try integer(name)
        guard v >= 0 else { throw bad(name, "expected a non-negative integer for") }
        return v
    }

    func port(_ name: String) throws(ProtocolError) -> UInt16? {
        guard let p = try optionalInteger(name) else { return nil }
        guard (1...65535).contains(p) else { throw bad(name, "expected a port 1-65535 for") }
        return UInt16(p)
    }

    func fingerprint(_ name: String) throws(ProtocolError) -> String {
        let f = try string(name)
        guard Validation.isValidFingerprint(f) else { throw bad(name, "expected 64 lowercase hex digits for") }
        return f
    }

    func optionalFingerprint(_ name: String) throws(ProtocolError) -> String? {
        guard members[name] != nil, members[name] != .null else { return nil }
        return try fingerprint(name)
    }
}

/// Parses a frame into the members of its top-level object, mapping reader errors to `bad_frame`.
func parseFrameObject(_ bytes: UnsafeRawBufferPointer) throws(ProtocolError) -> (Fields, type: String) {
    let value: JSONValue
    do throws(JSONError) {
        value = try JSONReader.parse(bytes)
    } catch {
        throw ProtocolError(.badFrame, "malformed JSON: \(error)")
    }
    guard case .object(let members) = value else { throw ProtocolError(.badFrame, "frame is not a JSON object") }
    var id: Int64?
    if let rawID = members["id"], rawID != .null {
        guard case .integer(let i) = rawID else { throw ProtocolError(.badFrame, "expected an integer for field 'id'") }
        id = i
    }
    let fields = Fields(members: members, id: id)
    return (fields, try fields.string("type"))
}
