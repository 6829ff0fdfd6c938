/// A strict, allocation-light JSON reader for single protocol frames.
///
/// Policy (documented in docs/PROTOCOL.md): RFC 8259 syntax, integers only (Int64, no fraction or
/// exponent, no leading zeros), strings must be valid UTF-8 with well-paired `\u` surrogates,
/// duplicate object keys are rejected (two parsers could otherwise disagree on which one wins),
/// nesting is limited, and nothing but whitespace may follow the top-level value.
public struct JSONReader: ~Copyable {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private let maxDepth: Int
    private var depth = 0
    // Reused across strings that contain escapes so each frame allocates at most one scratch array.
    private var scratch: [UInt8] = []

    private init(bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    /// Parses exactly one JSON value from `bytes`.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, maxDepth: Int = Limits.maxJSONDepth
    ) throws(JSONError) -> JSONValue {
        var reader = JSONReader(bytes: bytes, maxDepth: maxDepth)
        reader.skipWhitespace()
        let value = try reader.parseValue()
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw JSONError("trailing garbage", at: reader.index) }
        return value
    }

    /// Parses exactly one JSON value from an array of bytes.
    public static func parse(_ bytes: [UInt8], maxDepth: Int = Limits.maxJSONDepth) throws(JSONError) -> JSONValue {
        let result: Result<JSONValue, JSONError> = bytes.withUnsafeBytes { raw in
            do throws(JSONError) { return .success(try parse(raw, maxDepth: maxDepth)) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private var atEnd: Bool { index >= bytes.count }

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONError) -> JSONValue {
        guard let byte = peek() else { throw JSONError("unexpected end of input", at: index) }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .integer(try parseInteger())
        default: throw JSONError("unexpected character", at: index)
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw JSONError("invalid literal", at: index) }
        let base = literal.utf8Start
        for i in 0..<count where bytes[index + i] != base[i] {
            throw JSONError("invalid literal", at: index)
        }
        index += count
    }

    private mutating func enter() throws(JSONError) {
        depth += 1
        if depth > maxDepth { throw JSONError("nesting deeper than \(maxDepth)", at: index) }
    }

    private mutating func parseObject() throws(JSONError) -> JSONValue {
        try enter()
        index += 1
        var members: [String: JSONValue] = [:]
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            depth -= 1
            return .object(members)
        }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw JSONError("expected object key", at: index) }
            let keyOffset = index
            let key = try parseString()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw JSONError("expected ':'", at: index) }
            index += 1
            skipWhitespace()
            let value = try parseValue()
            if members.updateValue(value, forKey: key) != nil {
                throw JSONError("duplicate key '\(key)'", at: keyOffset)
            }
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                depth -= 1
                return .object(members)
            default: throw JSONError("expected ',' or '}'", at: index)
            }
        }
    }

    private mutating func parseArray() throws(JSONError) -> JSONValue {
        try enter()
        index += 1
        var elements: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            depth -= 1
            return .array(elements)
        }
        while true {
            skipWhitespace()
            elements.append(try parseValue())
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                depth -= 1
                return .array(elements)
            default: throw JSONError("expected ',' or ']'", at: index)
            }
        }
    }

    private mutating func parseInteger() throws(JSONError) -> Int64 {
        let start = index
        let negative = peek() == UInt8(ascii: "-")
        if negative { index += 1 }
        guard let first = peek(), first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            throw JSONError("invalid number", at: start)
        }
        // Accumulate negatively so Int64.min parses without overflowing.
        var value: Int64 = 0
        var digits = 0
        while let d = peek(), d >= UInt8(ascii: "0"), d <= UInt8(ascii: "9") {
            if digits == 1 && value == 0 { throw JSONError("leading zero in number", at: start) }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.subtractingReportingOverflow(Int64(d &- UInt8(ascii: "0")))
            if o1 || o2 { throw JSONError("integer out of range", at: start) }
            value = s
            digits += 1
            index += 1
        }
        if let next = peek(), next == UInt8(ascii: ".") || next == UInt8(ascii: "e") || next == UInt8(ascii: "E") {
            throw JSONError("floating-point numbers are not supported", at: start)
        }
        if negative { return value }
        guard value != .min else { throw JSONError("integer out of range", at: start) }
        return -value
    }

    private mutating func parseString() throws(JSONError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes means the bytes can become a String directly once validated.
        while index < bytes.count {
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return s
            }
            if b == UInt8(ascii: "\\") { break }
            try consumeRawByte(b)
        }
        guard !atEnd else { throw JSONError("unterminated string", at: start - 1) }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let b = bytes[index]
            if b == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if b == UInt8(ascii: "\\") {
                try parseEscape()
            } else {
                let from = index
                try consumeRawByte(b)
                scratch.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[from..<index]))
            }
        }
        throw JSONError("unterminated string", at: start - 1)
    }

    /// Validates one UTF-8 scalar starting at `index` (whose first byte is `b`) and skips it.
    private mutating func consumeRawByte(_ b: UInt8) throws(JSONError) {
        if b < 0x20 { throw JSONError("unescaped control character in string", at: index) }
        if b < 0x80 {
            index += 1
            return
        }
        let count: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xBF
        switch b {
        case 0xC2...0xDF: count = 1
        case 0xE0: count = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: count = 2
        case 0xED: count = 2; high = 0x9F  // excludes UTF-16 surrogates
        case 0xF0: count = 3; low = 0x90
        case 0xF1...0xF3: count = 3
        case 0xF4: count = 3; high = 0x8F  // caps at U+10FFFF
        default: throw JSONError("invalid UTF-8 in string", at: index)
        }
        guard bytes.count - index > count else { throw JSONError("invalid UTF-8 in string", at: index) }
        let second = bytes[index + 1]
        guard second >= low && second <= high else { throw JSONError("invalid UTF-8 in string", at: index) }
        for i in stride(from: 2, through: count, by: 1) where bytes[index + i] & 0xC0 != 0x80 {
            throw JSONError("invalid UTF-8 in string", at: index)
        }
        index += count + 1
    }

    private mutating func parseEscape() throws(JSONError) {
        let escapeStart = index
        index += 1
        guard let e = peek() else { throw JSONError("unterminated escape", at: escapeStart) }
        index += 1
        switch e {
        case UInt8(ascii: "\""): scratch.append(0x22)
        case UInt8(ascii: "\\"): scratch.append(0x5C)
        case UInt8(ascii: "/"): scratch.append(0x2F)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0C)
        case UInt8(ascii: "n"): scratch.append(0x0A)
        case UInt8(ascii: "r"): scratch.append(0x0D)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = UInt32(try parseHex4(escapeStart))
            if scalar >= 0xDC00 && scalar <= 0xDFFF { throw JSONError("unpaired low surrogate", at: escapeStart) }
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                else { throw JSONError("unpaired high surrogate", at: escapeStart) }
                index += 2
                let low = UInt32(try parseHex4(escapeStart))
                guard low >= 0xDC00 && low <= 0xDFFF else { throw JSONError("unpaired high surrogate", at: escapeStart) }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
            appendUTF8(scalar)
        default: throw JSONError("invalid escape", at: escapeStart)
        }
    }

    private mutating func parseHex4(_ escapeStart: Int) throws(JSONError) -> UInt16 {
        guard bytes.count - index >= 4 else { throw JSONError("truncated \\u escape", at: escapeStart) }
        var v: UInt16 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt8
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = c - UInt8(ascii: "A") + 10
            default: throw JSONError("invalid \\u escape", at: escapeStart)
            }
            v = v << 4 | UInt16(digit)
            index += 1
        }
        return v
    }

    private mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case 0..<0x80:
            scratch.append(UInt8(scalar))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | (scalar >> 6) & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | (scalar >> 12) & 0x3F))
            scratch.append(UInt8(0x80 | (scalar >> 6) & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }
}
