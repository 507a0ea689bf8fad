@testable import Storage

/// Everything this target knows about Storage's internals, in one file, so that when Storage
/// changes shape only this adapter follows (written against main's GzipSource and ByteSource).
enum StorageAdapter {
    /// The input as a stream that returns at most 1000 bytes a read.
    struct MemorySource: ByteSource {
        let bytes: [UInt8]
        var position = 0

        mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            let count = min(buffer.count, bytes.count - position, 1000)
            guard count > 0 else { return 0 }
            bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[position..<(position + count)])) }
            position += count
            return count
        }
    }

    /// Inflates the input as a compressed layer is inflated (concatenated members included),
    /// stopping after `limit` bytes of output: a small input may inflate to gigabytes, which is
    /// slow, not wrong.
    static func inflate(_ bytes: [UInt8], limit: Int) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer { buffer.deallocate() }
        do {
            var source = try GzipSource(MemorySource(bytes: bytes))
            var total = 0
            while total < limit {
                let count = try source.read(into: buffer)
                if count == 0 { break }
                total += count
            }
        } catch {
            _ = "\(error)"
        }
    }
}
