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
