/// A small encoder for AML (ACPI Machine Language, ACPI 6.x chapter 20): just the objects
/// rund's DSDT declares. Every function returns the encoded bytes of one term.
public enum AML {
    enum Opcode {
        static let zero: UInt8 = 0x00
        static let one: UInt8 = 0x01
        static let name: UInt8 = 0x08
        static let bytePrefix: UInt8 = 0x0a
        static let wordPrefix: UInt8 = 0x0b
        static let dwordPrefix: UInt8 = 0x0c
        static let stringPrefix: UInt8 = 0x0d
        static let qwordPrefix: UInt8 = 0x0e
        static let scope: UInt8 = 0x10
        static let buffer: UInt8 = 0x11
        static let package: UInt8 = 0x12
        static let method: UInt8 = 0x14
        static let dualNamePrefix: UInt8 = 0x2e
        static let multiNamePrefix: UInt8 = 0x2f
        static let extendedPrefix: UInt8 = 0x5b
        static let device: UInt8 = 0x82  // after extendedPrefix
        static let rootChar: UInt8 = 0x5c
        static let parentPrefix: UInt8 = 0x5e
        static let `return`: UInt8 = 0xa4
    }

    /// Largest PkgLength value: 28 bits.
    static let maxPackageLength = (1 << 28) - 1

    /// PkgLength for `contentLength` bytes that follow it; the encoded value counts its own
    /// 1 to 4 bytes. One byte holds up to 63; longer forms keep 4 bits in the lead byte.
    public static func packageLength(contentLength: Int) -> [UInt8] {
        if contentLength + 1 <= 0x3f { return [UInt8(contentLength + 1)] }
        for extra in 1...3 {
            let total = contentLength + 1 + extra
            guard total < 1 << (4 + 8 * extra) else { continue }
            var bytes: [UInt8] = [UInt8(extra << 6) | UInt8(total & 0xf)]
            for i in 0..<extra { bytes.append(UInt8(truncatingIfNeeded: total >> (4 + 8 * i))) }
            return bytes
        }
        preconditionFailure("AML package of \(contentLength) bytes exceeds the 28-bit PkgLength")
    }

    /// NameString: optional `\` (root) or `^` (parent) prefixes, then dot-separated segments of
    /// up to 4 characters each, padded with `_`. Names are rund's own constants, so a malformed
    /// one is a programming error.
    public static func nameString(_ path: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var rest = Substring(path)
        if rest.first == "\\" {
            bytes.append(Opcode.rootChar)
            rest = rest.dropFirst()
        } else {
            while rest.first == "^" {
                bytes.append(Opcode.parentPrefix)
                rest = rest.dropFirst()
            }
        }
        let segments = rest.isEmpty ? [] : rest.split(separator: ".", omittingEmptySubsequences: false).map(nameSegment)
        switch segments.count {
        case 0: bytes.append(Opcode.zero)  // NullName
        case 1: bytes += segments[0]
        case 2: bytes += [Opcode.dualNamePrefix] + segments[0] + segments[1]
        default:
            precondition(segments.count <= 255, "AML name \(path) has too many segments")
            bytes += [Opcode.multiNamePrefix, UInt8(segments.count)] + segments.flatMap { $0 }
        }
        return bytes
    }

    static func nameSegment(_ segment: Substring) -> [UInt8] {
        let chars = Array(segment.utf8)
        let valid =
            (1...4).contains(chars.count)
            && chars.allSatisfy { ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5f }
            && !(chars[0] >= 0x30 && chars[0] <= 0x39)
        precondition(valid, "invalid AML name segment \"\(segment)\"")
        return chars + [UInt8](repeating: 0x5f, count: 4 - chars.count)
    }

    /// The shortest integer encoding: ZeroOp, OneOp, or a Byte/Word/DWord/QWord constant.
    public static func integer(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        switch value {
        case 0: return [Opcode.zero]
        case 1: return [Opcode.one]
        case ...0xff: bytes = [Opcode.bytePrefix]; bytes.appendLittleEndian(UInt8(value))
        case ...0xffff: bytes = [Opcode.wordPrefix]; bytes.appendLittleEndian(UInt16(value))
        case ...0xffff_ffff: bytes = [Opcode.dwordPrefix]; bytes.appendLittleEndian(UInt32(value))
        default: bytes = [Opcode.qwordPrefix]; bytes.appendLittleEndian(value)
        }
        return bytes
    }

    /// A NUL-terminated ASCII string constant.
    public static func string(_ text: String) -> [UInt8] {
        precondition(text.utf8.allSatisfy { $0 > 0 && $0 < 0x80 }, "AML strings are ASCII without NUL")
        return [Opcode.stringPrefix] + Array(text.utf8) + [0]
    }

    /// A compressed EISA id such as "PNP0501": three letters of 5 bits, then four hex digits.
    public static func eisaID(_ id: String) -> [UInt8] {
        let chars = Array(id.utf8)
        let hex = chars.dropFirst(3).compactMap { Int(String(UnicodeScalar($0)), radix: 16) }
        precondition(
            chars.count == 7 && chars.prefix(3).allSatisfy { $0 >= 0x41 && $0 <= 0x5a } && hex.count == 4,
            "invalid EISA id \(id)")
        let letters = chars.prefix(3).map { UInt32($0 - 0x40) }
        let bytes: [UInt32] = [
            (letters[0] << 2) | (letters[1] >> 3),
            ((letters[1] & 0x7) << 5) | letters[2],
            UInt32(hex[0] << 4 | hex[1]),
            UInt32(hex[2] << 4 | hex[3]),
        ]
        return integer(UInt64(bytes[0] | bytes[1] << 8 | bytes[2] << 16 | bytes[3] << 24))
    }

    /// Buffer(n) { bytes }.
    public static func buffer(_ bytes: [UInt8]) -> [UInt8] {
        let content = integer(UInt64(bytes.count)) + bytes
        return [Opcode.buffer] + packageLength(contentLength: content.count) + content
    }

    /// Package() { elements } (at most 255 elements).
    public static func package(_ elements: [[UInt8]]) -> [UInt8] {
        precondition(elements.count <= 255, "AML Package holds at most 255 elements")
        let content = [UInt8(elements.count)] + elements.flatMap { $0 }
        return [Opcode.package] + packageLength(contentLength: content.count) + content
    }

    /// Name(name, object).
    public static func name(_ name: String, _ object: [UInt8]) -> [UInt8] {
        [Opcode.name] + nameString(name) + object
    }

    /// Scope(name) { terms }.
    public static func scope(_ name: String, _ terms: [[UInt8]]) -> [UInt8] {
        let content = nameString(name) + terms.flatMap { $0 }
        return [Opcode.scope] + packageLength(contentLength: content.count) + content
    }

    /// Device(name) { terms }.
    public static func device(_ name: String, _ terms: [[UInt8]]) -> [UInt8] {
        let content = nameString(name) + terms.flatMap { $0 }
        return [Opcode.extendedPrefix, Opcode.device] + packageLength(contentLength: content.count) + content
    }

    /// Method(name, argumentCount, NotSerialized/Serialized) { terms }.
    public static func method(
        _ name: String, argumentCount: Int = 0, serialized: Bool = false,
        _ terms: [[UInt8]]
    ) -> [UInt8] {
        precondition((0...7).contains(argumentCount), "AML methods take 0 to 7 arguments")
        let flags = UInt8(argumentCount) | (serialized ? 0x08 : 0)
        let content = nameString(name) + [flags] + terms.flatMap { $0 }
        return [Opcode.method] + packageLength(contentLength: content.count) + content
    }

    /// Return(object).
    public static func `return`(_ object: [UInt8]) -> [UInt8] {
        [Opcode.return] + object
    }
}
