#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS

/// One contiguous range of guest physical memory backed by a host mapping.
public final class GuestRegion: @unchecked Sendable {
    // Immutable after init; the mapping itself is shared with the guest and changes under us.
    public let guestBase: GuestAddress
    public let size: Int
    /// Where the host mapped the region: GuestMemory's accessors and the hypervisor's memory
    /// slots (`GuestMemory.hypervisorMappings`) use it, nothing else.
    let host: UnsafeMutableRawPointer
    public let isReadOnly: Bool
    /// Anonymous memory kept out of transparent huge pages (`keepSmallPages`).
    let smallPages: Bool

    /// Private anonymous memory, zero-filled on first touch; MAP_NORESERVE so an idle guest costs
    /// nothing. With `smallPages`, in 4 KiB pages whatever the host's transparent huge page
    /// setting (`keepSmallPages`); otherwise as the host decides.
    public init(anonymousAt guestBase: GuestAddress, size: Int, smallPages: Bool = false) throws {
        try GuestRegion.checkShape(base: guestBase, size: size)
        let p = try Self.reserveBetweenGuards(size: size, subject: "guest RAM \(size >> 20) MiB")
        guard mmap(p, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0) == p else {
            let error = SystemError.last("mmap", subject: "guest RAM \(size >> 20) MiB")
            Self.unmapWithGuards(p, size: size)
            throw error
        }
        try Self.excludeFromCoreDumps(p, size: size)
        if smallPages { Self.keepSmallPages(p, size: size) }
        self.guestBase = guestBase
        self.size = size
        self.host = p
        self.isReadOnly = false
        self.smallPages = smallPages
    }

    /// Memory backed by a file: `shared` writes go to the file (pmem, templates being made);
    /// private mappings copy on write (clones of a template).
    public init(file: FileDescriptor, offset: Int64 = 0, at guestBase: GuestAddress, size: Int, shared: Bool, readOnly: Bool) throws {
        try GuestRegion.checkShape(base: guestBase, size: size)
        let prot = readOnly ? PROT_READ : (PROT_READ | PROT_WRITE)
        let flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED | MAP_NORESERVE
        let p = try Self.reserveBetweenGuards(size: size, subject: "guest region file")
        guard mmap(p, size, prot, flags, file.rawValue, Int(offset)) == p else {
            let error = SystemError.last("mmap", subject: "guest region file")
            Self.unmapWithGuards(p, size: size)
            throw error
        }
        try Self.excludeFromCoreDumps(p, size: size)
        self.guestBase = guestBase
        self.size = size
        self.host = p
        self.isReadOnly = readOnly
        self.smallPages = false
    }

    /// A read-only view of a file shared with every other mapping of it (an image in the host's
    /// page cache): the file's first `fileLength` bytes (a multiple of the page size), then
    /// read-only zero pages up to `size`. Not guest RAM: a VMM maps it into the guest as a
    /// read-only memory slot and keeps it out of `GuestMemory`, so no device writes to it.
    public init(readOnlyFile file: FileDescriptor, fileLength: Int, at guestBase: GuestAddress, size: Int) throws {
        try GuestRegion.checkShape(base: guestBase, size: size)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard fileLength > 0, fileLength <= size, fileLength % page == 0 else {
            throw GuestMemoryError.badRegion(base: guestBase, size: fileLength)
        }
        // Reserve the whole range first, so the padding is ours and the file lands at its start.
        let p = try Self.reserveBetweenGuards(size: size, subject: "pmem range \(size >> 20) MiB")
        let padding = mmap(p, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
        let mapped = padding == p ? mmap(p, fileLength, PROT_READ, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, file.rawValue, 0) : padding
        guard mapped == p else {
            let error = SystemError.last("mmap", subject: "pmem file")
            Self.unmapWithGuards(p, size: size)
            throw error
        }
        try Self.excludeFromCoreDumps(p, size: size)
        self.guestBase = guestBase
        self.size = size
        self.host = p
        self.isReadOnly = true
        self.smallPages = false
    }

    deinit {
        Self.unmapWithGuards(host, size: size)
    }

    /// Replaces [offset, offset+length) of this writable region with a private mapping of
    /// `file` at `fileOffset` (all page-aligned, checked by the caller): reads come from the
    /// host's page cache, shared with every other mapping of the file, and a write copies the
    /// page. On failure the range is anonymous zero memory again, never a hole.
    func mapPrivately(_ file: FileDescriptor, fileOffset: Int64, at offset: Int, length: Int) throws(GuestMemoryError) {
        let target = host + offset
        let flags = MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE
        var failure: SystemError?
        if mmap(target, length, PROT_READ | PROT_WRITE, flags, file.rawValue, off_t(fileOffset)) != target {
            failure = .last("mmap", subject: "a file into guest memory")
        } else if madvise(target, length, MADV_DONTDUMP) != 0 {
            // madvise flags belong to a mapping: the new one needs MADV_DONTDUMP of its own.
            failure = .last("madvise", subject: "MADV_DONTDUMP on a file mapped into guest memory")
        }
        guard let failure else { return }
        // MAP_FIXED may have unmapped the range before failing: put anonymous memory back.
        _ = mmap(target, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0)
        _ = madvise(target, length, MADV_DONTDUMP)
        if smallPages { Self.keepSmallPages(target, size: length) }
        throw .fileMapping(address: guestBase.checkedAdding(UInt64(offset)) ?? guestBase, reason: "\(failure)")
    }

    /// The first address past the region (init checked that it does not overflow).
    public var guestEnd: GuestAddress { GuestAddress(guestBase.rawValue &+ UInt64(size)) }

    /// True when [address, address+length) lies entirely inside this region (overflow-safe).
    public func contains(_ address: GuestAddress, length: Int) -> Bool {
        guard length >= 0, let offset = address.offset(from: guestBase) else { return false }
        return offset <= UInt64(size) && UInt64(length) <= UInt64(size) - offset
    }

    /// What a guest holds is its tenant's: a core dump of the VMM must not carry it.
    private static func excludeFromCoreDumps(_ mapping: UnsafeMutableRawPointer, size: Int) throws {
        guard madvise(mapping, size, MADV_DONTDUMP) == 0 else {
            let error = SystemError.last("madvise", subject: "MADV_DONTDUMP on guest memory")
            unmapWithGuards(mapping, size: size)
            throw error
        }
    }

    private static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// Address space for `size` bytes with an inaccessible page on each side, returned at the
    /// first byte after the lower guard: a host access that runs off either end of guest memory
    /// faults instead of reaching a neighbour, and the region never merges with an adjacent
    /// mapping into one the kernel reports (smaps, `rund bench density`) as a whole.
    private static func reserveBetweenGuards(size: Int, subject: String) throws -> UnsafeMutableRawPointer {
        let guarded = mmap(nil, size + 2 * pageSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let guarded, guarded != MAP_FAILED else { throw SystemError.last("mmap", subject: subject) }
        return guarded + pageSize
    }

    private static func unmapWithGuards(_ mapping: UnsafeMutableRawPointer, size: Int) {
        munmap(mapping - pageSize, size + 2 * pageSize)
    }

    /// A guest touches its memory a page at a time, scattered over its RAM (its kernel's
    /// allocations, the free runs it has handed back): with transparent huge pages (Debian's
    /// default is `always`) each first touch costs the host 2 MiB. Measured in the rig: a
    /// cold-booted idle guest held 10.6 MiB of free memory in whole 2 MiB pages, and with 4 KiB
    /// pages its kernel booted 1.9 times slower (every first touch a nested page fault), so it
    /// is a choice (docs/bench.md). A kernel without transparent huge pages refuses the advice,
    /// which is then moot.
    private static func keepSmallPages(_ mapping: UnsafeMutableRawPointer, size: Int) {
        _ = madvise(mapping, size, MADV_NOHUGEPAGE)
    }

    private static func checkShape(base: GuestAddress, size: Int) throws {
        let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        guard size > 0, UInt64(size) % page == 0, base.rawValue % page == 0 else {
            throw GuestMemoryError.badRegion(base: base, size: size)
        }
        guard base.checkedAdding(UInt64(size)) != nil else {
            throw GuestMemoryError.badRegion(base: base, size: size)
        }
    }
}
