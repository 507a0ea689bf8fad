import Testing
import Untrusted

/// What a hostile guest might put in a panic line or an agent error, and what the operator's
/// terminal then gets.
struct UntrustedTextTests {
    /// No byte a terminal acts on: C0, DEL, C1 (as UTF-8), bidi and other format controls.
    static func isInert(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { scalar in
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate: return false
            default: return true
            }
        }
    }

    /// One hostile input; named so the test runner's own output stays inert too.
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var input: String
        var expected: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        Case(name: "OSC retitles the terminal", input: "\u{1b}]0;pwned\u{07}", expected: "\\x1b]0;pwned\\x07"),
        Case(name: "CSI clears the screen", input: "\u{1b}[2J\u{1b}[H", expected: "\\x1b[2J\\x1b[H"),
        Case(name: "CR overwrites the line", input: "ok\rFAKE", expected: "ok\\rFAKE"),
        Case(name: "backspaces", input: "abc\u{08}\u{08}\u{08}xyz", expected: "abc\\x08\\x08\\x08xyz"),
        Case(name: "newline and tab", input: "line one\nline two\ttab", expected: "line one\\nline two\\ttab"),
        Case(name: "NUL and DEL", input: "\u{00}\u{7f}", expected: "\\x00\\x7f"),
        Case(name: "right-to-left override", input: "evil\u{202e}gnp.exe", expected: "evil\\u{202e}gnp.exe"),
        Case(
            name: "bidi isolates, marks, separators, BOM", input: "\u{2066}\u{200f}\u{061c}\u{2028}\u{feff}",
            expected: "\\u{2066}\\u{200f}\\u{61c}\\u{2028}\\u{feff}"),
        Case(name: "C1 CSI", input: "\u{9b}31m", expected: "\\u{9b}31m"),
        Case(name: "a literal backslash stays unambiguous", input: "a\\x1b", expected: "a\\\\x1b"),
        Case(
            name: "a panic line", input: "Kernel panic - not syncing: sysrq triggered crash",
            expected: "Kernel panic - not syncing: sysrq triggered crash"),
        Case(name: "printable non-ASCII", input: "grüße 日本 🙂", expected: "grüße 日本 🙂"),
    ]

    @Test(arguments: cases)
    func controlsBecomeVisibleEscapes(_ hostile: Case) {
        let output = UntrustedText.escaped(hostile.input)
        #expect(output == hostile.expected)
        #expect(Self.isInert(output))
    }

    @Test func invalidUTF8BecomesHexEscapes() {
        // A lone continuation byte, an overlong "/", a surrogate, a value above U+10FFFF, a
        // truncated sequence at the end, and 0xff.
        let bytes: [UInt8] = [0x80, 0x41, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x80, 0x80, 0xff, 0x42, 0xe2, 0x82]
        let output = UntrustedText.escaped(bytes: bytes)
        #expect(output == "\\x80A\\xc0\\xaf\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\\xffB\\xe2\\x82")
        #expect(Self.isInert(output))
    }

    @Test func validMultibyteSequencesPassThrough() {
        let output = UntrustedText.escaped(bytes: Array("é€😀".utf8))
        #expect(output == "é€😀")
    }

    @Test func aMegabyteMessageIsCutWithAMarker() {
        let message = String(repeating: "\u{1b}[31mRED", count: (1 << 20) / 8)
        let output = UntrustedText.escaped(message, limit: 200)
        let kept = output.prefix { $0 != "…" }
        #expect(kept.utf8.count <= 200)
        #expect(output.utf8.count <= 200 + "…(1048576 more bytes)".utf8.count)
        #expect(Self.isInert(output))
        // Escapes are never cut: what is kept is whole "\x1b[31mRED" pieces (11 bytes each).
        #expect(kept.utf8.count % 11 == 0)
        #expect(output.hasSuffix("…(\(message.utf8.count - kept.utf8.count / 11 * 8) more bytes)"))
    }

    @Test func theDefaultLimitBoundsAnyInput() {
        let worst = [UInt8](repeating: 0x1b, count: 1 << 20)
        let output = UntrustedText.escaped(bytes: worst)
        #expect(output.utf8.count <= UntrustedText.defaultLimit + 32)
        #expect(output.hasPrefix("\\x1b\\x1b"))
        #expect(output.hasSuffix("…(\((1 << 20) - UntrustedText.defaultLimit / 4) more bytes)"))
    }

    @Test func aMultibyteScalarAtTheLimitIsLeftOutWhole() {
        #expect(UntrustedText.escaped("ab€", limit: 4) == "ab…(3 more bytes)")
        #expect(UntrustedText.escaped("ab€", limit: 5) == "ab€")
        #expect(UntrustedText.escaped("abc", limit: 0) == "…(3 more bytes)")
        #expect(UntrustedText.escaped("", limit: 0) == "")
        #expect(UntrustedText.escaped("a\u{1b}", limit: -5) == "…(2 more bytes)")
        #expect(UntrustedText.escaped("a\u{1b}", limit: .max) == "a\\x1b")
    }
}
