import Testing
@testable import ParleyProtocol

private func parse(_ s: String) throws(JSONError) -> JSONValue { try JSONReader.parse(Array(s.utf8)) }
private func rejects(_ bytes: [UInt8]) -> Bool { (try? JSONReader.parse(bytes)) == nil }
private func rejects(_ s: String) -> Bool { rejects(Array(s.utf8)) }

@Suite struct JSONReaderTests {
    @Test func parsesFlatObject() throws {
        let v = try parse(#" { "a" : 1 , "b":"x", "c":true, "d":false, "e":null, "f":[1, -2] } "#)
        #expect(v == .object([
            "a": .integer(1), "b": .string("x"), "c": .bool(true), "d": .bool(false), "e": .null,
            "f": .array([.integer(1), .integer(-2)]),
        ]))
    }

    @Test func simpleEscapes() throws {
        #expect(try parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{c}\n\r\t"))
        #expect(try parse(#""a\u0041\u00e9\u4e2d""#) == .string("aAé中"))
        #expect(try parse(#""\u0000""#) == .string("\u{0}"))
    }

    @Test func surrogatePairs() throws {
        #expect(try parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try parse(#""\uD834\uDD1E!""#) == .string("𝄞!"))
        #expect(rejects(#""\ud83d""#))          // lone high
        #expect(rejects(#""\ud83dx""#))
        #expect(rejects(#""\ude00""#))          // lone low
        #expect(rejects(#""\ud83d\u0041""#))    // high followed by non-low
    }

    @Test func badEscapes() {
        #expect(rejects(#""\x""#))
        #expect(rejects(#""\u12""#))
        #expect(rejects(#""\u12g4""#))
        #expect(rejects(#""abc\"#))
        #expect(rejects("\"a\u{1}b\""))         // raw control character
        #expect(rejects("\"unterminated"))
    }

    @Test func rawUTF8() throws {
        #expect(try parse("\"héllo 😀 中\"") == .string("héllo 😀 中"))
    }

    @Test(arguments: [
        [0x22, 0xFF, 0x22], [0x22, 0xC0, 0x80, 0x22],   // invalid byte, overlong NUL
        [0x22, 0xE0, 0x80, 0x80, 0x22],                  // overlong 3-byte
        [0x22, 0xED, 0xA0, 0x80, 0x22],                  // encoded surrogate
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],            // above U+10FFFF
        [0x22, 0xC3, 0x22], [0x22, 0xE2, 0x82, 0x22],    // truncated sequences
        [0x22, 0x80, 0x22],                              // lone continuation
    ] as [[UInt8]])
    func invalidUTF8(_ bytes: [UInt8]) {
        #expect(rejects(bytes))
    }

    @Test func depthLimit() throws {
        let ok = String(repeating: "[", count: 8) + String(repeating: "]", count: 8)
        let tooDeep = String(repeating: "[", count: 9) + String(repeating: "]", count: 9)
        #expect(!rejects(ok))
        #expect(rejects(tooDeep))
        #expect(rejects(String(repeating: "[", count: 100_000)))  // no stack overflow
        #expect(rejects(#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}"#))
    }

    @Test func trailingGarbage() {
        #expect(rejects("{} x"))
        #expect(rejects("{}{}"))
        #expect(rejects("1 2"))
        #expect(!rejects("{}\r\n "))
    }

    @Test func duplicateKeysRejected() {
        #expect(rejects(#"{"a":1,"a":2}"#))
        #expect(rejects(#"{"a":1,"\u0061":1}"#))  // same key after unescaping
    }

    @Test func numbers() throws {
        #expect(try parse("9223372036854775807") == .integer(.max))
        #expect(try parse("-9223372036854775808") == .integer(.min))
        #expect(try parse("-0") == .integer(0))
        #expect(rejects("9223372036854775808"))
        #expect(rejects("-9223372036854775809"))
        #expect(rejects("123456789012345678901234567890"))
        #expect(rejects("1.5"))
        #expect(rejects("1e3"))
        #expect(rejects("01"))
        #expect(rejects("-"))
        #expect(rejects("+1"))
    }

    @Test func syntaxErrors() {
        for s in ["", " ", "{", "}", "[1,]", #"{"a":1,}"#, #"{"a" 1}"#, "{a:1}", "tru", "nul", "falsey", "'a'", "[1 2]"] {
            #expect(rejects(s), "should reject \(s)")
        }
    }

    @Test func errorHasOffset() {
        #expect(throws: JSONError("trailing garbage", at: 3)) { try parse("{} x") }
    }
}

@Suite struct JSONWriterTests {
    private func written(_ v: JSONValue) -> String {
        var out: [UInt8] = []
        out.writeJSON(v)
        return String(decoding: out, as: UTF8.self)
    }

    @Test func escapesStrings() {
        #expect(written(.string("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}/é")) == #""a\"b\\c\n\r\t\b\f\u0001\u001f/é""#)
    }

    @Test func integers() {
        #expect(written(.integer(0)) == "0")
        #expect(written(.integer(-42)) == "-42")
        #expect(written(.integer(.min)) == "-9223372036854775808")
        #expect(written(.integer(.max)) == "9223372036854775807")
    }

    @Test func roundTripsThroughReader() throws {
        let value = JSONValue.object([
            "s": .string("line\nbreak \u{0} 😀 \"q\""), "n": .integer(-7), "b": .bool(true),
            "z": .null, "a": .array([.string(""), .object([:])]),
        ])
        var out: [UInt8] = []
        out.writeJSON(value)
        #expect(try JSONReader.parse(out) == value)
        #expect(written(.object(["b": .integer(1), "a": .integer(2)])) == #"{"a":2,"b":1}"#)
    }
}
