/// Register accesses arrive as byte buffers of the access width, little-endian as on x86.
extension UnsafeRawBufferPointer {
    /// The little-endian value of an access of 1, 2, 4 or 8 bytes (0 for any other width).
    var littleEndianValue: UInt64 {
        guard [1, 2, 4, 8].contains(count) else { return 0 }
        var value: UInt64 = 0
        for (i, byte) in enumerated() { value |= UInt64(byte) << (8 * UInt64(i)) }
        return value
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Stores the low `count` bytes of `value`, little-endian.
    func storeLittleEndian(_ value: UInt64) {
        for i in 0..<count { self[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }
}
