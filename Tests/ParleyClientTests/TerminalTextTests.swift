import ParleyClient
import ParleyProtocol
import Testing

/// The scalars a terminal acts on or that hide or reorder text: none may reach a human output line raw.
func isUnsafeOnTerminal(_ s: Unicode.Scalar) -> Bool {
    switch s.value {
    case 0x00...0x1F, 0x7F...0x9F, 0x061C, 0x200B...0x200F, 0x2028...0x202E, 0x2060...0x206F, 0xFEFF: true
    default: false
    }
}

@Suite("Untrusted text on the terminal")
struct TerminalTextTests {
    func shown(_ text: String) -> [String] { TerminalText(text).lines }

    @Test func everyC0ControlButNewlineIsCaretNotation() {
        let carets = Array("@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_")
        for value in UInt8(0x00)...0x1F where value != 0x0A {
            let control = Character(Unicode.Scalar(value))
            #expect(shown("a\(control)b") == ["a^\(carets[Int(value)])b"], "U+\(value)")
        }
        #expect(shown("\u{1b}[2J") == ["^[[2J"])
        #expect(shown("x\ry") == ["x^My"])
        #expect(shown("abc\u{8}\u{8}\u{8}xyz") == ["abc^H^H^Hxyz"])
        #expect(shown("\u{0}") == ["^@"])
        #expect(shown("\t") == ["^I"])
        #expect(shown("\u{1b}]0;owned\u{7}") == ["^[]0;owned^G"])
    }

    @Test func delIsCaretQuestionMark() {
        #expect(shown("a\u{7f}b") == ["a^?b"])
    }

    @Test func c1ControlsAreEscaped() {
        #expect(shown("\u{80}") == ["\\u{0080}"])
        #expect(shown("a\u{85}b") == ["a\\u{0085}b"])  // NEL, a newline to some terminals
        #expect(shown("\u{9b}2J") == ["\\u{009B}2J"])  // CSI
        #expect(shown("\u{9d}0;t\u{9c}") == ["\\u{009D}0;t\\u{009C}"])  // OSC ... ST
        #expect(shown("\u{9f}") == ["\\u{009F}"])
        // The neighbours of the control ranges are ordinary characters.
        #expect(shown(" ~\u{a0}é") == [" ~\u{a0}é"])
    }

    @Test func bidiAndInvisibleFormattingAreEscaped() {
        let escaped: [UInt32] = [
            0x200B, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2060, 0x2064, 0x2066, 0x2069,
            0x206F, 0xFEFF, 0x061C, 0x2028, 0x2029,
        ]
        for value in escaped {
            let s = Unicode.Scalar(value)!
            let hex = String(value, radix: 16, uppercase: true)
            #expect(shown("ab\(s)cd") == ["ab\\u{\(String(repeating: "0", count: 4 - hex.count) + hex)}cd"])
        }
        // Just outside the ranges: hair space, per mille, medium mathematical space, superscript zero.
        #expect(shown("a\u{200A}b\u{2030}c\u{205F}d\u{2070}") == ["a\u{200A}b\u{2030}c\u{205F}d\u{2070}"])
        #expect(shown("invoice\u{202E}fdp.exe") == ["invoice\\u{202E}fdp.exe"])
    }

    @Test func joinersStayOnlyWhereTheyJoin() {
        // ZWJ emoji sequences and ZWNJ in Persian are how those are written.
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}"
        let rainbowFlag = "\u{1F3F3}\u{FE0F}\u{200D}\u{1F308}"
        let persian = "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}"
        #expect(shown("\(family) \(rainbowFlag) \(persian)") == ["\(family) \(rainbowFlag) \(persian)"])
        // Next to ASCII, at an edge, or doubled, they only hide.
        #expect(shown("bo\u{200D}b") == ["bo\\u{200D}b"])
        #expect(shown("\u{200C}\u{0645}") == ["\\u{200C}\u{0645}"])
        #expect(shown("\u{0645}\u{200D}") == ["\u{0645}\\u{200D}"])
        #expect(shown("\u{1F468}\u{200D}\u{200D}\u{1F469}") == ["\u{1F468}\\u{200D}\\u{200D}\u{1F469}"])
        #expect(shown("\u{1F468}\u{200D} x") == ["\u{1F468}\\u{200D} x"])
    }

    @Test func ordinaryTextIsUnchanged() {
        let texts = [
            "bob: hi", "bob(private): hi", "Invalid Password. Please try again", "привет, мир", "你好，世界",
            "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "こんにちは", "👍🏽 🇺🇦 ❤️ 🎉", "e\u{301}te\u{301}",
            "a long line " + String(repeating: "x", count: 5000), "^[ is not ESC, \\u{202E} is not U+202E", "",
        ]
        for text in texts { #expect(shown(text) == [text]) }
    }

    @Test func newlinesContinueIndented() {
        #expect(shown("hi\nalice: forged") == ["hi", "    | alice: forged"])
        #expect(shown("a\n\nb") == ["a", "    | ", "    | b"])
        #expect(shown("a\n") == ["a", "    | "])
        #expect(shown("\n") == ["", "    | "])
        #expect(shown("a\r\nb") == ["a^M", "    | b"])
        #expect(shown("x\nSafety code with bob: 123 456") == ["x", "    | Safety code with bob: 123 456"])
    }

    @Test func noOutputLineCarriesAControl() {
        var every = ""
        for value in UInt32(0)...0x3000 { if let s = Unicode.Scalar(value) { every.unicodeScalars.append(s) } }
        every += "\u{FEFF}\u{1F468}\u{200D}\u{1F469}"
        let lines = shown(every)
        #expect(lines.count == 2)
        #expect(!lines.joined().unicodeScalars.contains { isUnsafeOnTerminal($0) && $0 != "\u{200D}" })
    }
}

@Suite("Every human output path shows network text safely")
struct PresenterSafetyTests {
    let evil = "\u{1b}[2J\u{1b}]0;t\u{7}\r\u{202E}x\nalice: forged"
    let shownEvil = ["^[[2J^[]0;t^G^M\\u{202E}x", "    | alice: forged"]

    func human(_ output: Output) -> [String] { Presenter.render(output, format: .human) }

    @Test func messagesBroadcastsAndPrivateText() {
        #expect(human(.event(.message(from: "mallory", text: evil))) == ["mallory: " + shownEvil[0], shownEvil[1]])
        #expect(human(.event(.broadcast(from: "mallory", text: evil))) == ["mallory: " + shownEvil[0], shownEvil[1]])
        #expect(human(.local(.privateChat(.message(from: "mallory", text: evil))))
            == ["mallory(private): " + shownEvil[0], shownEvil[1]])
        #expect(human(.event(.message(from: "bob", text: "hi"))) == ["bob: hi"])
        #expect(human(.local(.privateChat(.message(from: "bob", text: "hi")))) == ["bob(private): hi"])
    }

    @Test func serverTextNamesAndReasons() {
        #expect(human(.event(.error(code: .badFrame, message: evil))) == shownEvil)
        #expect(human(.event(.reply(.error(id: nil, .badFrame, message: evil)))) == shownEvil)
        #expect(human(.reply(.error(id: 1, .rateLimited, message: evil), command: .whoelse)) == shownEvil)
        #expect(human(.login(.refused(code: .registrationClosed, message: evil))) == shownEvil)
        #expect(human(.event(.presence(user: "x\u{1b}[2J", online: true))) == ["x^[[2J logged in"])
        #expect(human(.reply(.ok(id: 1, .users(["a\rb"])), command: .whoelse)) == ["a^Mb"])
        #expect(human(.event(.privateRequest(from: "m\u{9b}"))) == ["m\\u{009B} would like to private message, enter y or n:"])
        #expect(human(.local(.privateChat(.ended(user: "mallory", reason: evil))))
            == ["Private messaging with mallory ended: " + shownEvil[0], shownEvil[1]])
        #expect(human(.local(.clientError(code: "client_error", message: "Error. " + evil))) == ["Error. " + shownEvil[0], shownEvil[1]])
        #expect(human(.login(.refused(code: .wrongPassword, message: evil))) == ["Invalid Password. Please try again"])
    }

    @Test func completionNeverPutsANameWithControlsIntoTheEditLine() {
        let users: Set<String> = ["mallory\u{1b}[2J", "m\u{202E}x", "mike"]
        #expect(Completion.candidates(beforeCursor: "message m", users: users).candidates == ["mike"])
    }
}

@Suite("JSON output is exact and inert")
struct JSONSafetyTests {
    @Test func controlsBidiAndSeparatorsAreEscapesThatRoundTrip() throws {
        var every = ""
        for value in UInt32(0)...0x3000 { if let s = Unicode.Scalar(value) { every.unicodeScalars.append(s) } }
        every += "\u{FEFF}\u{1F468}\u{200D}\u{1F469} \u{10FFFF}"
        for output in [Output.event(.message(from: "mallory", text: every)), .local(.privateChat(.message(from: "m", text: every)))] {
            let line = try #require(Presenter.render(output, format: .json).first)
            #expect(!line.unicodeScalars.contains(where: isUnsafeOnTerminal))
            guard case .object(let o) = try JSONReader.parse(Array(line.utf8)) else { Issue.record("not an object"); return }
            #expect(o["text"] == .string(every))
        }
        let line = JSONPresenter.line(.string("\u{7f}\u{85}\u{2028}\u{2029}\u{202e}\u{feff}"))
        #expect(line == #""\u007f\u0085\u2028\u2029\u202e\ufeff""#)
        #expect(JSONPresenter.line(.string("héllo 👍 \\ \"")) == #""héllo 👍 \\ \"""#)
    }
}
