/// A device's config space as little-endian bytes, read the way the transport asks: `count`
/// bytes at a driver-chosen offset, zeros past the end (overflow-safe).
struct VirtioConfigSpace {
    private(set) var bytes: [UInt8]

    init(size: Int) {
        bytes = [UInt8](repeating: 0, count: size)
    }

    mutating func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset..<(offset + $0.count), with: $0) }
    }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count {
            let (position, overflow) = offset.addingReportingOverflow(UInt64(i))
            data[i] = !overflow && position < UInt64(bytes.count) ? bytes[Int(position)] : 0
        }
    }
}
