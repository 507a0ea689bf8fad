/// Text a hostile party controls (a guest's console line, an agent's error message), made safe to
/// put in a host error message or log line: nothing in the result can move the cursor, clear or
/// retitle the operator's terminal, reorder what follows it, or run on without end.
///
/// - Bytes that are not UTF-8 become `\xNN`.
/// - C0 controls and DEL become `\n`, `\t`, `\r` or `\xNN` (ESC is `\x1b`); a backslash becomes
///   `\\`, so every escape reads back unambiguously.
/// - Scalars that are invisible or steer the display (C1 controls, bidi overrides and isolates,
///   other format characters, line and paragraph separators) become `\u{NNNN}`.
/// - The result is at most `limit` bytes of UTF-8, then `…(N more bytes)` naming how much of the
///   input was left out. An escape is never cut in half.
public enum UntrustedText {
    /// Room for a kernel panic line or an agent's error message, short enough for one line.
    public static let defaultLimit = 512

    public static func escaped(_ text: String, limit: Int = defaultLimit) -> String {
        escaped(bytes: text.utf8, limit: limit)
    }

    public static func escaped(bytes: some Collection<UInt8>, limit: Int = defaultLimit) -> String {
        let limit = min(max(limit, 0), Int.max - 3)
        // Every input byte yields at least one output byte, so no more than limit + 3 bytes (the
        // tail of one scalar) can be rendered; the rest is only counted.
        let head = Array(bytes.prefix(limit + 3))
        var output = ""
        var outputBytes = 0
        var index = 0
        while index < head.count {
            let (piece, consumed) = render(head, at: index)
            guard outputBytes + piece.utf8.count <= limit else { break }
            output += piece
            outputBytes += piece.utf8.count
            index += consumed
        }
        let omitted = bytes.count - index
        if omitted > 0 { output += "…(\(omitted) more bytes)" }
        return output
    }

    /// The rendering of the scalar (or invalid byte) at `index`, and how many bytes it took.
    private static func render(_ bytes: [UInt8], at index: Int) -> (String, Int) {
        let lead = bytes[index]
        if lead < 0x80 { return (renderASCII(lead), 1) }
        guard let (scalar, length) = decodeScalar(bytes, at: index) else { return (hexByte(lead), 1) }
        return (isDisplaySafe(scalar) ? String(Character(scalar)) : "\\u{\(String(scalar.value, radix: 16))}", length)
    }

    private static func renderASCII(_ byte: UInt8) -> String {
        switch byte {
        case UInt8(ascii: "\n"): return "\\n"
        case UInt8(ascii: "\t"): return "\\t"
        case UInt8(ascii: "\r"): return "\\r"
        case UInt8(ascii: "\\"): return "\\\\"
        case 0x20..<0x7f: return String(Character(Unicode.Scalar(byte)))
        default: return hexByte(byte)
        }
    }

    private static func hexByte(_ byte: UInt8) -> String {
        let digits = String(byte, radix: 16)
        return "\\x" + (digits.count == 1 ? "0" + digits : digits)
    }

    /// A well-formed UTF-8 sequence of 2 to 4 bytes at `index` (no overlong forms, surrogates or
    /// values above U+10FFFF), else nil: the lead byte is then rendered alone and decoding
    /// resumes at the next byte.
    private static func decodeScalar(_ bytes: [UInt8], at index: Int) -> (Unicode.Scalar, Int)? {
        let lead = bytes[index]
        let length: Int, secondRange: ClosedRange<UInt8>, initial: UInt32
        switch lead {
        case 0xc2...0xdf: (length, secondRange, initial) = (2, 0x80...0xbf, UInt32(lead & 0x1f))
        case 0xe0: (length, secondRange, initial) = (3, 0xa0...0xbf, UInt32(lead & 0x0f))
        case 0xed: (length, secondRange, initial) = (3, 0x80...0x9f, UInt32(lead & 0x0f))
        case 0xe1...0xef: (length, secondRange, initial) = (3, 0x80...0xbf, UInt32(lead & 0x0f))
        case 0xf0: (length, secondRange, initial) = (4, 0x90...0xbf, UInt32(lead & 0x07))
        case 0xf1...0xf3: (length, secondRange, initial) = (4, 0x80...0xbf, UInt32(lead & 0x07))
        case 0xf4: (length, secondRange, initial) = (4, 0x80...0x8f, UInt32(lead & 0x07))
        default: return nil
        }
        guard bytes.count - index >= length else { return nil }
        var value = initial
        for offset in 1..<length {
            let byte = bytes[index + offset]
            let allowed: ClosedRange<UInt8> = offset == 1 ? secondRange : 0x80...0xbf
            guard allowed.contains(byte) else { return nil }
            value = value << 6 | UInt32(byte & 0x3f)
        }
        guard let scalar = Unicode.Scalar(value) else { return nil }
        return (scalar, length)
    }

    /// Visible text: not a control, format character (bidi controls, zero-width joiners, BOM...)
    /// or line/paragraph separator.
    private static func isDisplaySafe(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate: return false
        default: return true
        }
    }
}
