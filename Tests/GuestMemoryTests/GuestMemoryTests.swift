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

/// Guest RAM stays in 4 KiB pages whatever the host's transparent huge page setting: the
/// kernel's own record of the mapping (its smaps VmFlags) carries `nh`, and a touched byte
/// costs a page, not 2 MiB.
@Suite struct SmallPagesTests {
    /// The smaps entry of the mapping that starts at `address`.
    static func smapsEntry(startingAt address: UInt) throws -> [Substring] {
        let file = try FileDescriptor.open("/proc/self/smaps", O_RDONLY | O_CLOEXEC)
        defer { file.close() }
        let text = String(decoding: try file.readToEnd(), as: UTF8.self)
        let lines = text.split(separator: "\n")
        let start = String(address, radix: 16)
        guard let first = lines.firstIndex(where: { $0.hasPrefix(start + "-") }) else { return [] }
        let rest = lines[(first + 1)...]
        let end = rest.firstIndex(where: { $0.first?.isHexDigit == true && $0.contains("-") && !$0.contains(":") }) ?? rest.endIndex
        return Array(lines[first..<end])
    }

    @Test func guestRAMIsNeverBackedByHugePages() throws {
        let size = 8 << 20
        let memory = try GuestMemory.anonymous([(base: 0, size: size)])
        let host = try memory.hostPointer(at: 0, length: size)
        // A byte in the middle of a 2 MiB-aligned stretch, as a guest kernel would touch it.
        let aligned = (UInt(bitPattern: host) + (2 << 20) - 1) & ~UInt((2 << 20) - 1)
        try memory.store(UInt8(1), at: GuestAddress(UInt64(aligned - UInt(bitPattern: host)) + 4096))
        let entry = try Self.smapsEntry(startingAt: UInt(bitPattern: host))
        let flags = entry.first { $0.hasPrefix("VmFlags:") }?.split(separator: " ") ?? []
        #expect(flags.contains("nh"), "\(entry)")
        let rss = entry.first { $0.hasPrefix("Rss:") }.flatMap { $0.split(separator: " ").dropFirst().first }.flatMap { Int($0) }
        #expect(rss == 4, "\(entry)")
        #expect(entry.contains { $0.hasPrefix("AnonHugePages:") && $0.hasSuffix(" 0 kB") }, "\(entry)")
    }
}
