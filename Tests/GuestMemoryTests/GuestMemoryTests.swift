#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Testing
@testable import GuestMemory

@Suite struct GuestMemoryTests {
    @Test func readsBackWhatWasWritten() throws {
        let memory = try GuestMemory.anonymous([(base: 0, size: 1 << 20)])
        try memory.store(UInt32(0xdeadbeef), at: 0x1001)
        #expect(try memory.load(UInt32.self, at: 0x1001) == 0xdeadbeef)
        #expect(try memory.readBytes(at: 0x1001, count: 4) == [0xef, 0xbe, 0xad, 0xde])
    }

    @Test func rejectsAccessOutsideOrAcrossRegions() throws {
        let memory = try GuestMemory.anonymous([(base: 0, size: 4096), (base: 8192, size: 4096)])
        #expect(throws: GuestMemoryError.self) { try memory.load(UInt64.self, at: 4092) }
        #expect(throws: GuestMemoryError.self) { try memory.load(UInt8.self, at: 4096) }
        #expect(throws: GuestMemoryError.self) { try memory.readBytes(at: GuestAddress(UInt64.max - 2), count: 8) }
        #expect(throws: GuestMemoryError.self) { try memory.readBytes(at: 0, count: -1) }
        #expect(try memory.load(UInt64.self, at: GuestAddress(8192 + 4088)) == 0)
    }

    @Test func rejectsOverlappingRegions() {
        #expect(throws: GuestMemoryError.self) {
            _ = try GuestMemory.anonymous([(base: 0, size: 8192), (base: 4096, size: 4096)])
        }
    }
}

/// Guest RAM asked for in small pages stays in 4 KiB pages whatever the host's transparent huge
/// page setting: a touched byte costs a page, not 2 MiB. (The mapping's `nh` flag, and its
/// absence by default, are checked with its `dd` in MachineWatchdogTests.)
@Suite struct SmallPagesTests {
    @Test func aTouchedByteMakesOnePageResident() throws {
        let size = 8 << 20
        let memory = try GuestMemory.anonymous([(base: 0, size: size)], smallPages: true)
        let host = try memory.hostPointer(at: 0, length: size)
        // A byte inside a 2 MiB-aligned stretch, as a guest kernel would touch it.
        let aligned = (UInt(bitPattern: host) + (2 << 20) - 1) & ~UInt((2 << 20) - 1)
        try memory.store(UInt8(1), at: GuestAddress(UInt64(aligned - UInt(bitPattern: host)) + 4096))
        // One page of the region is resident: not the 512 of a huge page.
        var resident = [UInt8](repeating: 0, count: size / 4096)
        #expect(mincore(host, size, &resident) == 0)
        #expect(resident.filter { $0 & 1 == 1 }.count == 1)
    }
}

/// Each region of guest RAM has an inaccessible page on either side: a host access running off
/// its end faults, and the region stays a mapping of its own (it never merges with a neighbour).
@Suite struct GuardPageTests {
    /// The permissions of the mapping that holds `address`, from /proc/self/maps.
    static func permissions(at address: UInt) throws -> String? {
        let maps = String(decoding: try FileDescriptor.open("/proc/self/maps", O_RDONLY).readToEnd(limit: 64 << 20), as: UTF8.self)
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ")
            let range = fields[0].split(separator: "-")
            guard fields.count >= 2, range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16) else {
                continue
            }
            if start <= address && address < end { return String(fields[1]) }
        }
        return nil
    }

    @Test func guestRAMLiesBetweenInaccessiblePages() throws {
        let size = 2 << 20
        let memory = try GuestMemory.anonymous([(base: 0, size: size)])
        let host = UInt(bitPattern: try memory.hostPointer(at: 0, length: size))
        #expect(try Self.permissions(at: host - 1) == "---p")
        #expect(try Self.permissions(at: host) == "rw-p")
        #expect(try Self.permissions(at: host + UInt(size) - 1) == "rw-p")
        #expect(try Self.permissions(at: host + UInt(size)) == "---p")
        withExtendedLifetime(memory) {}
    }
}
