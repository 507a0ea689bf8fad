// Little-endian helpers for building firmware structures (boot_params, ACPI tables) as plain bytes.
extension Array where Element == UInt8 {
    /// Appends `value` in little-endian byte order.
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    /// Overwrites `MemoryLayout<T>.size` bytes at `offset` with `value` in little-endian order.
    mutating func putLittleEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        Swift.withUnsafeBytes(of: value.littleEndian) { raw in
            for (i, byte) in raw.enumerated() { self[offset + i] = byte }
        }
    }

    /// Reads a little-endian integer at `offset`; the caller has checked the bounds.
    func littleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        var value: T = 0
        for i in (0..<MemoryLayout<T>.size).reversed() {
            value = (value << 8) | T(self[offset + i])
        }
        return value
    }

    /// Appends the ASCII bytes of `text`, padded with `pad` or cut to exactly `width` bytes.
    mutating func appendFixedASCII(_ text: String, width: Int, pad: UInt8 = 0x20) {
        var bytes = Array(text.utf8.prefix(width))
        bytes += [UInt8](repeating: pad, count: width - bytes.count)
        append(contentsOf: bytes)
    }
}

/// The byte that makes `bytes` sum to zero modulo 256 (ACPI and resource-template checksums).
func checksumByte<C: Collection>(_ bytes: C) -> UInt8 where C.Element == UInt8 {
    let sum = bytes.reduce(UInt8(0)) { $0 &+ $1 }
    return 0 &- sum
}
