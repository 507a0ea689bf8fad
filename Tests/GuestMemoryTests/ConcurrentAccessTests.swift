#if canImport(Glibc)
import Glibc
#endif
import GuestMemory
import HostOS
import Testing

/// The accessors for memory the guest changes concurrently (virtqueue rings): single atomic
/// loads and stores, little-endian, bounds-checked first, and refused at an address that is not a
/// multiple of their width. Checked on real mappings: anonymous RAM and a read-only file region.
@Suite struct ConcurrentAccessTests {
    /// RAM [0, 64 KiB), a hole, then a read-only file mapping [128 KiB, 132 KiB) full of 0x11.
    static let readOnlyBase: GuestAddress = 0x2_0000
    let memory: GuestMemory

    init() throws {
        memory = try GuestMemory(regions: [
            try GuestRegion(anonymousAt: 0, size: 0x1_0000),
            try GuestRegion(
                file: try Self.file([UInt8](repeating: 0x11, count: 4096)), at: Self.readOnlyBase, size: 4096,
                shared: false, readOnly: true),
        ])
    }

    /// A real, already unlinked temporary file holding `contents`.
    static func file(_ contents: [UInt8]) throws -> FileDescriptor {
        var template = Array("/tmp/rund-guest-memory-test-XXXXXX".utf8CString)
        let raw = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard raw >= 0 else { throw SystemError.last("mkstemp") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        let file = FileDescriptor(adopting: raw)
        try contents.withUnsafeBytes { _ = try file.pwrite($0, at: 0) }
        return file
    }

    @Test func acquireReleaseAndVolatileAccessesRoundTripEveryWidthLittleEndian() throws {
        try memory.storeRelease(UInt16(0xbeef), at: 0x102)
        #expect(try memory.readBytes(at: 0x102, count: 2) == [0xef, 0xbe])
        #expect(try memory.loadAcquire(UInt16.self, at: 0x102) == 0xbeef)

        try memory.storeRelease(UInt8(0x7f), at: 0x201)
        try memory.storeRelease(UInt32(0x0102_0304), at: 0x204)
        try memory.storeRelease(UInt64(0x1122_3344_5566_7788), at: 0x208)
        #expect(try memory.loadAcquire(UInt8.self, at: 0x201) == 0x7f)
        #expect(try memory.loadAcquire(UInt32.self, at: 0x204) == 0x0102_0304)
        #expect(try memory.readBytes(at: 0x204, count: 4) == [4, 3, 2, 1])
        #expect(try memory.load(UInt64.self, at: 0x208) == 0x1122_3344_5566_7788)

        try memory.storeVolatile(UInt32(0xcafe_f00d), at: 0x300)
        try memory.storeVolatile(UInt64(0xfeed_face_dead_beef), at: 0x308)
        #expect(try memory.loadVolatile(UInt32.self, at: 0x300) == 0xcafe_f00d)
        #expect(try memory.loadVolatile(UInt64.self, at: 0x308) == 0xfeed_face_dead_beef)
        #expect(try memory.loadVolatile(UInt16.self, at: 0x302) == 0xcafe)
        // The last word of RAM is still inside.
        try memory.storeRelease(UInt64.max, at: 0xfff8)
        #expect(try memory.loadAcquire(UInt64.self, at: 0xfff8) == UInt64.max)
    }

    @Test func misalignedAddressesAreRefusedAndMemoryIsUntouched() throws {
        #expect(throws: GuestMemoryError.misaligned(address: 0x1001, alignment: 2)) {
            try memory.loadAcquire(UInt16.self, at: 0x1001)
        }
        #expect(throws: GuestMemoryError.misaligned(address: 0x1002, alignment: 4)) {
            try memory.storeRelease(UInt32.max, at: 0x1002)
        }
        #expect(throws: GuestMemoryError.misaligned(address: 0x1004, alignment: 8)) {
            try memory.loadVolatile(UInt64.self, at: 0x1004)
        }
        #expect(throws: GuestMemoryError.misaligned(address: 0x100c, alignment: 8)) {
            try memory.storeVolatile(UInt64.max, at: 0x100c)
        }
        #expect(try memory.readBytes(at: 0x1000, count: 32) == [UInt8](repeating: 0, count: 32))
        // A byte is aligned anywhere.
        try memory.storeRelease(UInt8(1), at: 0x1003)
        #expect(try memory.loadAcquire(UInt8.self, at: 0x1003) == 1)
    }

    @Test func addressesOutsideMemoryAreRefused() throws {
        #expect(throws: GuestMemoryError.outOfBounds(address: 0x1_0000, length: 4)) {
            try memory.loadAcquire(UInt32.self, at: 0x1_0000)  // the hole after RAM
        }
        #expect(throws: GuestMemoryError.outOfBounds(address: 0x2_1000, length: 2)) {
            try memory.loadVolatile(UInt16.self, at: 0x2_1000)  // just past the last region
        }
        #expect(throws: GuestMemoryError.outOfBounds(address: GuestAddress(UInt64.max - 7), length: 8)) {
            try memory.storeRelease(UInt64(1), at: GuestAddress(UInt64.max - 7))
        }
        // Misalignment is reported first: it says more about the address than its place does.
        #expect(throws: GuestMemoryError.misaligned(address: 0xfffc, alignment: 8)) {
            try memory.loadAcquire(UInt64.self, at: 0xfffc)
        }
    }

    @Test func storesRefuseReadOnlyMemoryWhichLoadsStillRead() throws {
        #expect(try memory.loadAcquire(UInt32.self, at: Self.readOnlyBase) == 0x1111_1111)
        #expect(try memory.loadVolatile(UInt64.self, at: GuestAddress(Self.readOnlyBase.rawValue + 8)) == 0x1111_1111_1111_1111)
        #expect(throws: GuestMemoryError.readOnly(address: Self.readOnlyBase)) {
            try memory.storeRelease(UInt16(0), at: Self.readOnlyBase)
        }
        #expect(throws: GuestMemoryError.readOnly(address: Self.readOnlyBase)) {
            try memory.storeVolatile(UInt32(0), at: Self.readOnlyBase)
        }
        #expect(throws: GuestMemoryError.readOnly(address: Self.readOnlyBase)) {
            try memory.checkAccess(at: Self.readOnlyBase, length: 16, writing: true)
        }
        try memory.checkAccess(at: Self.readOnlyBase, length: 4096, writing: false)
        #expect(try memory.readBytes(at: Self.readOnlyBase, count: 16) == [UInt8](repeating: 0x11, count: 16))
    }

    @Test func volatileCopiesReadAnyAlignmentWithinBounds() throws {
        let pattern = (0..<37).map { UInt8($0 * 7 + 1) }
        try memory.write(pattern, at: 0x2003)
        var copy = [UInt8](repeating: 0, count: pattern.count)
        try copy.withUnsafeMutableBytes { try memory.readVolatile(into: $0, at: 0x2003) }
        #expect(copy == pattern)
        var descriptor = [UInt8](repeating: 0, count: 16)
        try descriptor.withUnsafeMutableBytes { try memory.readVolatile(into: $0, at: 0x2000) }
        #expect(descriptor == [0, 0, 0] + pattern.prefix(13))
        #expect(throws: GuestMemoryError.outOfBounds(address: 0xfff8, length: 16)) {
            try descriptor.withUnsafeMutableBytes { try memory.readVolatile(into: $0, at: 0xfff8) }
        }
    }

    @Test func fileCopiesGoThroughTheSameChecks() throws {
        let file = try Self.file((0..<512).map { UInt8(truncatingIfNeeded: $0) })
        #expect(try memory.copy(fromFile: file, at: 256, to: 0x4000, count: 256) == 256)
        #expect(try memory.readBytes(at: 0x4000, count: 256) == (0..<256).map { UInt8($0) })
        #expect(throws: GuestMemoryError.readOnly(address: Self.readOnlyBase)) {
            try memory.copy(fromFile: file, at: 0, to: Self.readOnlyBase, count: 16)
        }
        #expect(throws: GuestMemoryError.outOfBounds(address: 0xff00, length: 512)) {
            try memory.copy(fromFile: file, at: 0, to: 0xff00, count: 512)
        }
        #expect(try memory.copy(from: Self.readOnlyBase, count: 8, toFile: file, at: 0) == 8)
        var head = [UInt8](repeating: 0, count: 8)
        _ = try head.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) }
        #expect(head == [UInt8](repeating: 0x11, count: 8))
    }

    @Test func hypervisorMappingsAreWhereGuestMemoryLives() throws {
        let mappings = memory.hypervisorMappings
        #expect(mappings.map(\.guestBase) == [0, Self.readOnlyBase])
        #expect(mappings.map(\.size) == [0x1_0000, 4096])
        #expect(mappings.map(\.isReadOnly) == [false, true])
        try memory.store(UInt64(0x0123_4567_89ab_cdef), at: 0x40)
        #expect(UInt64(littleEndian: mappings[0].host.load(fromByteOffset: 0x40, as: UInt64.self)) == 0x0123_4567_89ab_cdef)
        #expect(mappings[1].host.load(fromByteOffset: 100, as: UInt8.self) == 0x11)
    }
}
