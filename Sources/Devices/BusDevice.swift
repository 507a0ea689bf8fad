/// A device on the x86 port I/O bus. `port` is absolute; `data.count` is 1, 2 or 4.
/// Several vCPU threads may call at once, so implementations serialise their own state.
public protocol PortIODevice: AnyObject, Sendable {
    func read(port: UInt16, into data: UnsafeMutableRawBufferPointer)
    func write(port: UInt16, _ data: UnsafeRawBufferPointer)
}

/// A device in guest physical address space. `offset` is relative to the device's base.
public protocol MMIODevice: AnyObject, Sendable {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, _ data: UnsafeRawBufferPointer)
}

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
