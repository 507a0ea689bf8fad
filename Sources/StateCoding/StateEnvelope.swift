/// The frame around one saved-state payload in a file: what kind of file it is, which version of
/// its encoding, how long the payload is and its CRC-32, so a file of another kind, a newer or
/// older format, a truncated copy or a flipped bit is refused before any of it is decoded.
///
/// Layout (little-endian): magic (8 bytes) | version (u32) | payload length (u64) | CRC-32 of the
/// payload (u32) | payload.
public enum StateEnvelope {
    public static let headerSize = 8 + 4 + 8 + 4

    public static func seal(_ payload: [UInt8], magic: StateMagic, version: UInt32) -> [UInt8] {
        var writer = StateWriter()
        for byte in magic.bytes { writer.put(byte) }
        writer.put(version)
        writer.put(UInt64(payload.count))
        writer.put(CRC32.checksum(payload))
        return writer.bytes + payload
    }

    /// The payload of `bytes`, which must be a `magic` file of exactly `version` whose length and
    /// checksum match.
    public static func open(_ bytes: [UInt8], magic: StateMagic, version: UInt32) throws(StateEnvelopeError) -> [UInt8] {
        guard bytes.count >= headerSize, Array(bytes.prefix(8)) == magic.bytes else { throw .notThisKind(magic.name) }
        func field<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
            // In bounds: the header's size was checked above.
            bytes[offset..<(offset + MemoryLayout<T>.size)].reversed().reduce(T.zero) { ($0 << 8) | T($1) }
        }
        let found = field(UInt32.self, at: 8)
        guard found == version else { throw .unsupportedVersion(kind: magic.name, found: found, supported: version) }
        let length = field(UInt64.self, at: 12)
        let payload = Array(bytes[headerSize...])
        guard UInt64(payload.count) == length else { throw .lengthMismatch(kind: magic.name, recorded: length, actual: payload.count) }
        guard CRC32.checksum(payload) == field(UInt32.self, at: 20) else { throw .checksumMismatch(kind: magic.name) }
        return payload
    }
}

/// Eight bytes that open a kind of state file, and the kind's name for errors.
public struct StateMagic: Sendable, Equatable {
    public let bytes: [UInt8]
    public let name: String

    /// `text` is padded with zero bytes or cut to eight bytes.
    public init(_ text: StaticString, name: String) {
        let raw = text.withUTF8Buffer { Array($0) }
        bytes = Array((raw + [UInt8](repeating: 0, count: 8)).prefix(8))
        self.name = name
    }
}

public enum StateEnvelopeError: Error, Equatable, Sendable, CustomStringConvertible {
    case notThisKind(String)
    case unsupportedVersion(kind: String, found: UInt32, supported: UInt32)
    case lengthMismatch(kind: String, recorded: UInt64, actual: Int)
    case checksumMismatch(kind: String)

    public var description: String {
        switch self {
        case .notThisKind(let kind): return "not a \(kind) (wrong magic or too short)"
        case let .unsupportedVersion(kind, found, supported):
            return "\(kind) format version \(found) is not the version \(supported) this rund reads"
        case let .lengthMismatch(kind, recorded, actual):
            return "\(kind) is truncated or padded: its header records \(recorded) bytes of state, the file holds \(actual)"
        case .checksumMismatch(let kind): return "\(kind) is corrupt: its checksum does not match its contents"
        }
    }
}

/// CRC-32 (IEEE 802.3, the zlib/PNG polynomial): catches accidental corruption of a state file.
/// Not a defence against a forger, which the decoder's own checks are.
public enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { index -> UInt32 in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1 }
        return value
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc ^ 0xFFFF_FFFF
    }
}
