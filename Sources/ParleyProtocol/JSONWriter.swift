/// A byte sink the JSON writer appends to; NIO's `ByteBuffer` conforms in the NIO layer so frames
/// are written straight into the buffer that goes on the wire, without an intermediate String.
public protocol JSONOutput {
    /// Appends one byte.
    mutating func appendByte(_ byte: UInt8)
    /// Appends raw bytes.
    mutating func appendBytes(_ bytes: UnsafeRawBufferPointer)
}

extension Array: JSONOutput where Element == UInt8 {
    public mutating func appendByte(_ byte: UInt8) { append(byte) }
    public mutating func appendBytes(_ bytes: UnsafeRawBufferPointer) { append(contentsOf: bytes) }
}

extension JSONOutput {
    @inline(__always)
    mutating func appendStatic(_ s: StaticString) {
        appendBytes(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// Writes `s` as a quoted JSON string, escaping quotes, backslashes and all control characters.
    public mutating func writeJSONString(_ s: String) {
        appendByte(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { utf8 in
            let raw = UnsafeRawBufferPointer(utf8)
            var runStart = 0
            for i in 0..<raw.count {
                let b = raw[i]
                guard b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") else { continue }
                // Copy the clean run in one call; escapes are rare in chat text.
                if runStart < i { appendBytes(UnsafeRawBufferPointer(rebasing: raw[runStart..<i])) }
                runStart = i + 1
                switch b {
                case UInt8(ascii: "\""): appendStatic("\\\"")
                case UInt8(ascii: "\\"): appendStatic("\\\\")
                case 0x0A: appendStatic("\\n")
                case 0x0D: appendStatic("\\r")
                case 0x09: appendStatic("\\t")
                case 0x08: appendStatic("\\b")
                case 0x0C: appendStatic("\\f")
                default:
                    appendStatic("\\u00")
                    appendByte(hexDigit(b >> 4))
                    appendByte(hexDigit(b & 0xF))
                }
            }
            if runStart < raw.count { appendBytes(UnsafeRawBufferPointer(rebasing: raw[runStart...])) }
        }
        appendByte(UInt8(ascii: "\""))
    }

    /// Writes a decimal integer without allocating.
    public mutating func writeJSONInteger(_ value: Int64) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            // Work on the magnitude as UInt64 so Int64.min needs no special case.
            var magnitude = value.magnitude
            var i = 20
            repeat {
                i -= 1
                digits[i] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { appendByte(UInt8(ascii: "-")) }
            appendBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: digits[i...])))
        }
    }

    /// Writes `true` or `false`.
    public mutating func writeJSONBool(_ value: Bool) {
        if value { appendStatic("true") } else { appendStatic("false") }
    }

    /// Writes any `JSONValue`; object keys are sorted so equal values always produce equal bytes.
    public mutating func writeJSON(_ value: JSONValue) {
        switch value {
        case .null: appendStatic("null")
        case .bool(let b): writeJSONBool(b)
        case .integer(let i): writeJSONInteger(i)
        case .string(let s): writeJSONString(s)
        case .array(let elements):
            appendByte(UInt8(ascii: "["))
            for (n, element) in elements.enumerated() {
                if n > 0 { appendByte(UInt8(ascii: ",")) }
                writeJSON(element)
            }
            appendByte(UInt8(ascii: "]"))
        case .object(let members):
            appendByte(UInt8(ascii: "{"))
            for (n, key) in members.keys.sorted().enumerated() {
                if n > 0 { appendByte(UInt8(ascii: ",")) }
                writeJSONString(key)
                appendByte(UInt8(ascii: ":"))
                writeJSON(members[key]!)
            }
            appendByte(UInt8(ascii: "}"))
        }
    }

    // Message encoders open every object with its "type" member, so each later field is
    // written with a leading comma and no "first field" bookkeeping is needed.
    @inline(__always)
    mutating func beginObject(type: StaticString) {
        appendStatic("{\"type\":\"")
        appendStatic(type)
        appendByte(UInt8(ascii: "\""))
    }

    @inline(__always)
    mutating func key(_ key: StaticString) {
        appendStatic(",\"")
        appendStatic(key)
        appendStatic("\":")
    }

    mutating func field(_ k: StaticString, _ value: String) { key(k); writeJSONString(value) }
    mutating func field(_ k: StaticString, _ value: Int64) { key(k); writeJSONInteger(value) }
    mutating func field(_ k: StaticString, _ value: Bool) { key(k); writeJSONBool(value) }
    mutating func field(_ k: StaticString, _ value: Int64?) { if let value { field(k, value) } }
    mutating func field(_ k: StaticString, _ value: String?) { if let value { field(k, value) } }

    mutating func field(_ k: StaticString, _ values: [String]) {
        key(k)
        appendByte(UInt8(ascii: "["))
        for (n, v) in values.enumerated() {
            if n > 0 { appendByte(UInt8(ascii: ",")) }
            writeJSONString(v)
        }
        appendByte(UInt8(ascii: "]"))
    }

    /// Closes the object and terminates the frame.
    @inline(__always)
    mutating func endFrame() { appendStatic("}\n") }
}

@inline(__always)
private func hexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10
}
