/// Text from the network made safe to print on a terminal: nothing in it can move the cursor,
/// clear or retitle the screen, reorder what follows, hide itself, or start a line of its own.
///
/// Every control and invisible formatting character is shown in a visible form instead: C0
/// controls in caret notation (`^[` for ESC, `^M` for CR, `^?` for DEL), C1 controls and Unicode
/// bidi and invisible formatting characters as `\u{202E}`. A newline still breaks the line, but
/// each continuation starts with `continuationMarker`, so no line of a message can pass for a new
/// message, a notice, or a safety code. Text without such characters is returned unchanged.
public struct TerminalText: Sendable, Hashable {
    /// Starts every line after the first, where a sender's name or the client's own wording never does.
    public static let continuationMarker = "    | "

    /// The physical lines to print, none containing a newline or a control character.
    public let lines: [String]

    /// Makes `untrusted` safe to print (a pure function of the text).
    public init(_ untrusted: String) {
        var lines: [String] = []
        var current = ""
        let scalars = Array(untrusted.unicodeScalars)
        for (i, scalar) in scalars.enumerated() {
            if scalar == "\n" {
                lines.append(current)
                current = Self.continuationMarker
                continue
            }
            switch Self.classify(scalar) {
            case .plain:
                current.unicodeScalars.append(scalar)
            case .joiner where Self.joins(scalars.indices.contains(i - 1) ? scalars[i - 1] : nil,
                                          scalars.indices.contains(i + 1) ? scalars[i + 1] : nil):
                current.unicodeScalars.append(scalar)
            case .control, .joiner, .format:
                current += Self.visible(scalar)
            }
        }
        lines.append(current)
        self.lines = lines
    }

    /// What a terminal would do with a scalar, as far as showing it safely goes.
    enum Kind {
        /// Printed as is.
        case plain
        /// C0 (except newline, which the caller handles), DEL, C1: terminals act on these.
        case control
        /// Bidi overrides, embeddings and isolates, invisible separators, BOM: they reorder or
        /// hide text, so a line can look unlike what it contains.
        case format
        /// ZWNJ and ZWJ: invisible too, but part of how emoji sequences and several scripts are
        /// written, so they stay where they join two non-ASCII characters.
        case joiner
    }

    static func classify(_ scalar: Unicode.Scalar) -> Kind {
        switch scalar.value {
        case 0x00...0x1F, 0x7F, 0x80...0x9F: .control
        case 0x200C, 0x200D: .joiner
        // 061C (Arabic letter mark) is a bidi control too; 2028/2029 are line and paragraph
        // separators, which some renderers break lines at; 206A-206F are deprecated invisible
        // formatting characters.
        case 0x061C, 0x200B, 0x200E, 0x200F, 0x2028...0x202E, 0x2060...0x206F, 0xFEFF: .format
        default: .plain
        }
    }

    /// Whether a joiner between `before` and `after` is doing its job (emoji, Indic, Arabic)
    /// rather than hiding in or next to ASCII text, where it has no use.
    static func joins(_ before: Unicode.Scalar?, _ after: Unicode.Scalar?) -> Bool {
        func isVisibleNonASCII(_ s: Unicode.Scalar?) -> Bool {
            guard let s else { return false }
            return s.value > 0x7F && classify(s) == .plain && !s.properties.isWhitespace
        }
        return isVisibleNonASCII(before) && isVisibleNonASCII(after)
    }

    /// The visible form of a scalar that is not printed as is.
    static func visible(_ scalar: Unicode.Scalar) -> String {
        switch scalar.value {
        case 0x00...0x1F: return "^" + String(Unicode.Scalar(UInt8(scalar.value) + 0x40))
        case 0x7F: return "^?"
        default:
            let hex = String(scalar.value, radix: 16, uppercase: true)
            return "\\u{" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex + "}"
        }
    }

    /// Whether a JSON line must carry `scalar` as a `\u` escape so the line is as inert on a
    /// terminal as human output. JSON itself would allow it raw; it is never needed raw.
    static func mustEscapeInJSON(_ scalar: Unicode.Scalar) -> Bool {
        classify(scalar) != .plain
    }
}
