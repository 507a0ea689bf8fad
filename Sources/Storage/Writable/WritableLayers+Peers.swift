#if canImport(Glibc)
import Glibc
#endif
import HostOS

// SEEK_DATA/SEEK_HOLE are hidden behind _GNU_SOURCE in glibc; these are the kernel's values.
private let seekData: Int32 = 3
private let seekHole: Int32 = 4

/// The two ways of making a writable layer that reflink is measured against (`rund bench layers`).
extension WritableLayers {
    /// A full data copy of the template (holes skipped, as `cp --sparse` would), unlinked.
    public func makeByCopy(sizeMiB: Int = defaultSizeMiB) throws -> FileDescriptor {
        let template = try FileDescriptor.open(try templatePath(sizeMiB: sizeMiB), O_RDONLY)
        let layer = try anonymousFile()
        let size = try template.size()
        try FileSystem.truncate(layer, size: size)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while offset < size {
            let dataStart = lseek(template.rawValue, off_t(offset), seekData)
            if dataStart < 0 { break }  // ENXIO: only a hole is left.
            let holeStart = Int64(lseek(template.rawValue, dataStart, seekHole))
            var position = Int64(dataStart)
            while position < holeStart {
                let want = Int(min(Int64(buffer.count), holeStart - position))
                let n = try template.pread(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), at: position)
                if n == 0 { break }
                var written = 0
                while written < n {
                    written += try layer.pwrite(UnsafeRawBufferPointer(rebasing: buffer[written..<n]), at: position + Int64(written))
                }
                position += Int64(n)
            }
            offset = holeStart
        }
        return layer
    }

    /// A fresh `mkfs.ext4` for every layer, unlinked once formatted.
    public func makeByFormatting(sizeMiB: Int = defaultSizeMiB) throws -> FileDescriptor {
        try ensureDirectory()
        let path = directory + "/instances/fresh-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).img"
        defer { try? FileSystem.unlink(at: nil, path) }
        try Self.format(path, sizeMiB: sizeMiB)
        return try FileDescriptor.open(path, O_RDWR)
    }
}
