#if canImport(Glibc)
import Glibc
#endif

/// File names and paths as the kernel sees them: bytes. A Swift `String` is the wrong type for a
/// name that came from an untrusted archive: decoding repairs invalid UTF-8 to U+FFFD, and
/// `Character` comparisons see grapheme clusters (a "/" followed by a combining mark is one
/// Character that is not "/"), so a check on the String and the syscall on its bytes disagree.
public enum RawName {
    /// Runs body with the bytes as a NUL-terminated C string. A NUL inside the bytes would cut
    /// the name short in the kernel, so it is refused (EINVAL) rather than passed on.
    public static func withCString<T>(_ bytes: [UInt8], call: String, _ body: (UnsafePointer<CChar>) throws -> T) throws -> T {
        guard !bytes.contains(0) else { throw SystemError(call, errno: EINVAL, subject: printable(bytes)) }
        return try (bytes + [0]).withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// A one-line, unambiguous rendering for messages: printable text stays, control and format
    /// characters, combining marks (which would glue onto a neighbouring "/" on screen), invalid
    /// UTF-8 and backslashes become `\xNN`.
    public static func printable<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        let bytes = Array(bytes)
        var out = ""
        var index = 0
        while index < bytes.count {
            var iterator = bytes[index...].makeIterator()
            var parser = Unicode.UTF8.ForwardParser()
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                let scalar = Unicode.UTF8.decode(encoded)
                if shows(scalar) {
                    out.unicodeScalars.append(scalar)
                } else {
                    for byte in encoded { out += escaped(byte) }
                }
                index += encoded.count
            case .error(let length):
                let end = min(index + max(length, 1), bytes.count)
                for byte in bytes[index..<end] { out += escaped(byte) }
                index = end
            case .emptyInput:
                return out
            }
        }
        return out
    }

    private static func shows(_ scalar: Unicode.Scalar) -> Bool {
        if scalar.isASCII { return scalar.value >= 0x20 && scalar.value < 0x7f && scalar != "\\" }
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned,
            .nonspacingMark, .spacingMark, .enclosingMark, .spaceSeparator:
            return false
        default:
            return true
        }
    }

    private static func escaped(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return "\\x" + String(digits[Int(byte >> 4)]) + String(digits[Int(byte & 15)])
    }
}
