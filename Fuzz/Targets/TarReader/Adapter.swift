@testable import Storage

/// Everything this target knows about Storage's internals, in one file, so that when Storage
/// changes shape only this adapter follows (written against main's TarReader, TarEntry,
/// ArchivePath and ByteSource).
enum StorageAdapter {
    /// The input as a stream that returns at most 3000 bytes a read, so reads straddle blocks.
    struct MemorySource: ByteSource {
        let bytes: [UInt8]
        var position = 0

        mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            let count = min(buffer.count, bytes.count - position, 3000)
            guard count > 0 else { return 0 }
            bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[position..<(position + count)])) }
            position += count
            return count
        }
    }

    /// Reads the archive as layer application and image import do: every entry's header (pax,
    /// GNU long names and all), its path checked by ArchivePath, a symlink target checked for
    /// staying inside; the content of every other entry read, the rest skipped.
    static func readArchive(_ bytes: [UInt8]) {
        var reader = TarReader(MemorySource(bytes: bytes), describing: "fuzz input")
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
        defer { buffer.deallocate() }
        var index = 0
        do {
            while let entry = try reader.next() {
                if let parts = try? ArchivePath.components(entry.path, what: "fuzz input"), entry.kind == .symbolicLink {
                    _ = ArchivePath.symlinkStaysInside(target: entry.linkTarget, depth: parts.count - 1)
                }
                if index % 2 == 0 {
                    while try reader.readContent(into: buffer) > 0 {}
                }
                index += 1
            }
        } catch {
            _ = "\(error)"
        }
    }
}
