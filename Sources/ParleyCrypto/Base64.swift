/// Standard-alphabet base64 without padding, as the PHC string format uses it.
/// Decoding is strict (no padding, no whitespace, zero trailing bits) so that each byte string has
/// exactly one accepted encoding and a stored hash cannot be altered into an equivalent variant.
enum UnpaddedBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index + 3 <= bytes.count {
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            for shift in [18, 12, 6, 0] { out.append(alphabet[Int((chunk >> UInt32(shift)) & 0x3f)]) }
            index += 3
        }
        switch bytes.count - index {
        case 1:
            let chunk = UInt32(bytes[index]) << 16
            out.append(alphabet[Int((chunk >> 18) & 0x3f)])
            out.append(alphabet[Int((chunk >> 12) & 0x3f)])
        case 2:
            let chunk = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
            out.append(alphabet[Int((chunk >> 18) & 0x3f)])
            out.append(alphabet[Int((chunk >> 12) & 0x3f)])
            out.append(alphabet[Int((chunk >> 6) & 0x3f)])
        default:
            break
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: Substring) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 4 != 1 else { return nil }
        var values = [UInt32]()
        values.reserveCapacity(chars.count)
        for c in chars {
            guard let v = value(of: c) else { return nil }
            values.append(v)
        }
        var out = [UInt8]()
        out.reserveCapacity(chars.count * 3 / 4)
        var index = 0
        while index + 4 <= values.count {
            let chunk = values[index] << 18 | values[index + 1] << 12 | values[index + 2] << 6 | values[index + 3]
            out.append(UInt8(chunk >> 16 & 0xff))
            out.append(UInt8(chunk >> 8 & 0xff))
            out.append(UInt8(chunk & 0xff))
            index += 4
        }
        switch values.count - index {
        case 2:
            guard values[index + 1] & 0x0f == 0 else { return nil }
            out.append(UInt8((values[index] << 2 | values[index + 1] >> 4) & 0xff))
        case 3:
            guard values[index + 2] & 0x03 == 0 else { return nil }
            let chunk = values[index] << 12 | values[index + 1] << 6 | values[index + 2]
            out.append(UInt8(chunk >> 10 & 0xff))
            out.append(UInt8(chunk >> 2 & 0xff))
        default:
            break
        }
        return out
    }

    private static func value(of c: UInt8) -> UInt32? {
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): UInt32(c - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): UInt32(c - UInt8(ascii: "a")) + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(c - UInt8(ascii: "0")) + 52
        case UInt8(ascii: "+"): 62
        case UInt8(ascii: "/"): 63
        default: nil
        }
    }
}
