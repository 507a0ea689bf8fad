#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// File I/O straight between a host file and guest memory (virtio-blk): one pread or pwrite on
/// a checked range, so no host pointer into guest memory leaves this module.
extension GuestMemory {
    /// Reads up to `count` bytes of `file` at `offset` into [address, address+count), which
    /// must lie in one writable region. Returns the bytes read (0 at end of file).
    public func copy(fromFile file: FileDescriptor, at offset: Int64, to address: GuestAddress, count: Int) throws -> Int {
        guard count > 0 else { return 0 }
        let destination = try writableHostPointer(at: address, length: count)
        return try file.pread(into: UnsafeMutableRawBufferPointer(start: destination, count: count), at: offset)
    }

    /// Writes up to `count` bytes from [address, address+count), which must lie in one region,
    /// to `file` at `offset`. Returns the bytes written.
    public func copy(from address: GuestAddress, count: Int, toFile file: FileDescriptor, at offset: Int64) throws -> Int {
        guard count > 0 else { return 0 }
        let source = try hostPointer(at: address, length: count)
        return try file.pwrite(UnsafeRawBufferPointer(start: source, count: count), at: offset)
    }
}

extension GuestMemory {
    /// Makes [address, address+length) a private copy-on-write mapping of `file` at `offset`:
    /// the guest reads the file's pages from the host's page cache, shared with every other
    /// mapping of the file (every guest booting one kernel), until it writes one; no write ever
    /// reaches the file, and a discarded page reads as the file's again. Address, offset and
    /// length must be whole pages, the range must lie in one writable region and the file must
    /// hold all of it (a touch past its end would fault the VMM). What the range held is gone.
    public func mapCopyOnWrite(of file: FileDescriptor, at offset: Int64, to address: GuestAddress, length: Int) throws(GuestMemoryError) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard length > 0 else { return }
        guard address.rawValue % UInt64(page) == 0, length % page == 0, offset >= 0, offset % Int64(page) == 0 else {
            throw .misaligned(address: address, alignment: page)
        }
        let (region, pointer) = try locateWritable(address, length: length)
        let fileSize: Int64
        do {
            fileSize = try file.size()
        } catch {
            throw .fileMapping(address: address, reason: "\(error)")
        }
        let (end, overflow) = offset.addingReportingOverflow(Int64(length))
        guard !overflow, end <= fileSize else {
            throw .fileMapping(address: address, reason: "the file holds \(fileSize) bytes, not \(offset)+\(length)")
        }
        try region.mapPrivately(file, fileOffset: offset, at: pointer - region.host, length: length)
    }
}

extension GuestMemory {
    /// Most ranges one `gatherWrite` takes (the kernel's IOV_MAX, less the prefix).
    public static let maxGatherRanges = 1023

    /// Writes `prefix` (host bytes) and then the guest ranges, in order, with one writev(2): a
    /// packet device (a tap) takes one frame per write. Each range must lie in one region.
    /// Returns the bytes written.
    public func gatherWrite(
        prefix: UnsafeRawBufferPointer, ranges: [(address: GuestAddress, length: Int)], to file: FileDescriptor
    ) throws -> Int {
        guard ranges.count <= Self.maxGatherRanges else {
            throw SystemError("writev", errno: EINVAL, subject: "\(ranges.count) guest ranges, more than \(Self.maxGatherRanges)")
        }
        var vectors = [iovec(iov_base: UnsafeMutableRawPointer(mutating: prefix.baseAddress), iov_len: prefix.count)]
        for range in ranges where range.length > 0 {
            vectors.append(iovec(iov_base: try hostPointer(at: range.address, length: range.length), iov_len: range.length))
        }
        return try retryingInterrupts("writev") { writev(file.rawValue, vectors, Int32(vectors.count)) }
    }
}

/// Guest memory as a file (snapshots and templates): every region back to back, in guest
/// address order, with nothing for the gaps between them.
extension GuestMemory {
    /// Writes all of guest memory to `file` from offset 0 and sizes the file to `totalSize`.
    /// Pages that are all zeros are not written: they stay holes, which read back as zeros and
    /// cost a template neither disk nor page cache until a clone reads them.
    public func save(toFile file: FileDescriptor) throws {
        try FileSystem.truncate(file, size: 0)
        try FileSystem.truncate(file, size: Int64(totalSize))
        let page = 4096
        var fileOffset: Int64 = 0
        for region in regions {
            var start = 0
            while start < region.size {
                // Runs of non-zero pages go out in one write (at most 1 MiB each).
                guard !Self.isZero(region.host + start, count: page) else {
                    start += page
                    continue
                }
                var end = start + page
                while end < region.size, end - start < 1 << 20, !Self.isZero(region.host + end, count: page) { end += page }
                var done = start
                while done < end {
                    let written = try file.pwrite(
                        UnsafeRawBufferPointer(start: region.host + done, count: end - done),
                        at: fileOffset + Int64(done))
                    guard written > 0 else { throw SystemError("pwrite", errno: EIO, subject: "guest memory file (wrote nothing)") }
                    done += written
                }
                start = end
            }
            fileOffset += Int64(region.size)
        }
        try file.fsync()
    }

    /// Guest memory laid out as `layout`, each region a private copy-on-write mapping of `file`
    /// at the region's place in it (`save(toFile:)`'s layout): pages are shared with every other
    /// mapping of the file until the guest writes them, and no write ever reaches the file.
    /// The file must hold all of the layout, or a touch past its end would fault the VMM.
    public static func copyOnWrite(of file: FileDescriptor, layout: [(base: GuestAddress, size: Int)]) throws -> GuestMemory {
        var total: Int64 = 0
        for region in layout {
            let (sum, overflow) = total.addingReportingOverflow(Int64(region.size))
            guard !overflow, region.size > 0 else { throw GuestMemoryError.badRegion(base: region.base, size: region.size) }
            total = sum
        }
        let size = try file.size()
        guard size >= total else { throw GuestMemoryFileError.tooShort(size: size, needed: total) }
        var offset: Int64 = 0
        var regions: [GuestRegion] = []
        for region in layout {
            regions.append(try GuestRegion(file: file, offset: offset, at: region.base, size: region.size, shared: false, readOnly: false))
            offset += Int64(region.size)
        }
        return try GuestMemory(regions: regions)
    }

    private static func isZero(_ start: UnsafeMutableRawPointer, count: Int) -> Bool {
        zeroPage.withUnsafeBytes { zeros in
            guard let base = zeros.baseAddress, count <= zeros.count else { return false }
            return memcmp(start, base, count) == 0
        }
    }

    private static let zeroPage = [UInt8](repeating: 0, count: 4096)
}

/// A memory file that cannot back the guest memory asked of it.
public enum GuestMemoryFileError: Error, CustomStringConvertible, Sendable, Equatable {
    case tooShort(size: Int64, needed: Int64)

    public var description: String {
        switch self {
        case let .tooShort(size, needed): return "the memory file holds \(size) bytes, the guest's memory needs \(needed)"
        }
    }
}
