import GuestMemory
import HostOS
import Testing

/// `mapCopyOnWrite` on real mappings of a real file: the guest reads the file's pages from the
/// host's page cache until it writes one, never writes the file, and a discarded page reads as
/// the file's again (never zeros, never another guest's data).
@Suite struct CopyOnWriteMappingTests {
    static let page = 4096
    let contents = (0..<(3 * page)).map { UInt8(truncatingIfNeeded: $0 / 7 &+ $0) }

    @Test func theGuestReadsTheFileAndWritesOnlyItsOwnCopy() throws {
        let file = try ConcurrentAccessTests.file(contents)
        let memory = try GuestMemory.anonymous([(base: 0, size: 0x1_0000)])
        // What the range held before is gone; what is around it stays.
        try memory.write([UInt8](repeating: 0xaa, count: 4 * Self.page), at: 0x1000)
        try memory.mapCopyOnWrite(of: file, at: Int64(Self.page), to: 0x2000, length: 2 * Self.page)
        #expect(try memory.readBytes(at: 0x2000, count: 2 * Self.page) == Array(contents[Self.page...]))
        #expect(try memory.readBytes(at: 0x1000, count: Self.page) == [UInt8](repeating: 0xaa, count: Self.page))
        #expect(try memory.readBytes(at: 0x4000, count: Self.page) == [UInt8](repeating: 0xaa, count: Self.page))

        // A guest write copies the page: the file keeps its bytes.
        try memory.write([1, 2, 3], at: 0x2010)
        #expect(try memory.readBytes(at: 0x2010, count: 3) == [1, 2, 3])
        var onDisk = [UInt8](repeating: 0, count: 3)
        _ = try onDisk.withUnsafeMutableBytes { try file.pread(into: $0, at: Int64(Self.page + 0x10)) }
        #expect(onDisk == Array(contents[(Self.page + 0x10)..<(Self.page + 0x13)]))

        // A page the guest has not written is the page cache's own: a change to the file shows.
        try [UInt8]([9, 9]).withUnsafeBytes { _ = try file.pwrite($0, at: Int64(2 * Self.page)) }
        #expect(try memory.readBytes(at: 0x3000, count: 2) == [9, 9])
        // ... and the written one does not follow the file.
        try [UInt8]([7]).withUnsafeBytes { _ = try file.pwrite($0, at: Int64(Self.page + 0x10)) }
        #expect(try memory.readBytes(at: 0x2010, count: 1) == [1])

        // Discarded (the balloon, free page reporting): the file's page again, not zeros.
        try memory.discard(at: 0x2000, length: Self.page)
        #expect(try memory.readBytes(at: 0x2010, count: 3) == [7] + contents[(Self.page + 0x11)..<(Self.page + 0x13)])
    }

    /// Two clones of one template's memory file: what one writes the other never sees, and a
    /// page one gives back (balloon, free page reporting) reads as the template's page again:
    /// never zeros, never the other clone's data.
    @Test func aClonesGivenBackPageIsTheTemplatesAgain() throws {
        let template = try ConcurrentAccessTests.file(contents)
        let layout: [(base: GuestAddress, size: Int)] = [(base: 0, size: 3 * Self.page)]
        let first = try GuestMemory.copyOnWrite(of: template, layout: layout)
        let second = try GuestMemory.copyOnWrite(of: template, layout: layout)
        try first.write([UInt8](repeating: 0xa1, count: Self.page), at: 0x1000)
        try second.write([UInt8](repeating: 0xb2, count: Self.page), at: 0x1000)
        #expect(try first.readBytes(at: 0x1000, count: 4) == [0xa1, 0xa1, 0xa1, 0xa1])
        try first.discard(at: 0x1000, length: Self.page)
        #expect(try first.readBytes(at: 0x1000, count: Self.page) == Array(contents[Self.page..<(2 * Self.page)]))
        #expect(try second.readBytes(at: 0x1000, count: 4) == [0xb2, 0xb2, 0xb2, 0xb2])
        var onDisk = [UInt8](repeating: 0, count: Self.page)
        _ = try onDisk.withUnsafeMutableBytes { try template.pread(into: $0, at: Int64(Self.page)) }
        #expect(onDisk == Array(contents[Self.page..<(2 * Self.page)]))
    }

    @Test func refusesMisalignedRangesReadOnlyMemoryAndAFileTooShort() throws {
        let file = try ConcurrentAccessTests.file(contents)
        let memory = try GuestMemory(regions: [
            try GuestRegion(anonymousAt: 0, size: 0x1_0000),
            try GuestRegion(file: try ConcurrentAccessTests.file(contents), at: 0x2_0000, size: Self.page, shared: false, readOnly: true),
        ])
        try memory.write([UInt8](repeating: 0x55, count: 0x1_0000), at: 0)
        #expect(throws: GuestMemoryError.misaligned(address: 0x2100, alignment: Self.page)) {
            try memory.mapCopyOnWrite(of: file, at: 0, to: 0x2100, length: Self.page)
        }
        #expect(throws: GuestMemoryError.misaligned(address: 0x2000, alignment: Self.page)) {
            try memory.mapCopyOnWrite(of: file, at: 0x10, to: 0x2000, length: Self.page)
        }
        #expect(throws: GuestMemoryError.misaligned(address: 0x2000, alignment: Self.page)) {
            try memory.mapCopyOnWrite(of: file, at: 0, to: 0x2000, length: 100)
        }
        #expect(throws: GuestMemoryError.readOnly(address: 0x2_0000)) {
            try memory.mapCopyOnWrite(of: file, at: 0, to: 0x2_0000, length: Self.page)
        }
        // Past the end of RAM, and more than the file holds.
        #expect(throws: GuestMemoryError.outOfBounds(address: 0xf000, length: 2 * Self.page)) {
            try memory.mapCopyOnWrite(of: file, at: 0, to: 0xf000, length: 2 * Self.page)
        }
        #expect(throws: GuestMemoryError.fileMapping(address: 0x2000, reason: "the file holds 12288 bytes, not 8192+8192")) {
            try memory.mapCopyOnWrite(of: file, at: Int64(2 * Self.page), to: 0x2000, length: 2 * Self.page)
        }
        #expect(try memory.readBytes(at: 0, count: 0x1_0000) == [UInt8](repeating: 0x55, count: 0x1_0000))
    }
}
