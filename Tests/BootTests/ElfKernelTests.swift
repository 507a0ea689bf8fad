#if canImport(Glibc)
import Glibc
#endif
import GuestMemory
import HostOS
import Testing
@testable import Boot

/// An ELF64 x86-64 executable laid out like a vmlinux: program headers, then each segment's
/// bytes at a file offset of its own.
struct SyntheticELF {
    struct Segment {
        var type: UInt32 = 1
        var physicalAddress: UInt64
        var offset: UInt64
        var bytes: [UInt8]
        var memorySize: UInt64
    }
    var machine: UInt16 = 62
    var type: UInt16 = 2
    var elfClass: UInt8 = 2
    var entry: UInt64 = 0x100_0000
    var programHeaderEntrySize: UInt16 = 56
    var programHeaderCount: UInt16?
    var segments = [
        Segment(
            physicalAddress: 0x100_0000, offset: 0x1000, bytes: (0..<0x3000).map { UInt8(truncatingIfNeeded: $0 &* 7) }, memorySize: 0x3000),
        // .data then .bss: 0x800 bytes from the file, 0x1800 of zeros after them.
        Segment(physicalAddress: 0x100_4000, offset: 0x5000, bytes: [UInt8](repeating: 0xd7, count: 0x800), memorySize: 0x2000),
        // A note: not loaded.
        Segment(type: 4, physicalAddress: 0x100_8000, offset: 0x6000, bytes: [1, 2, 3, 4], memorySize: 4),
    ]

    var bytes: [UInt8] {
        let end = segments.map { Int($0.offset) + $0.bytes.count }.max() ?? 64
        var file = [UInt8](repeating: 0, count: max(end, 64 + segments.count * 56))
        file.replaceSubrange(0..<4, with: [0x7f, 0x45, 0x4c, 0x46])
        file[4] = elfClass
        file[5] = 1
        file[6] = 1
        file.putLittleEndian(type, at: 16)
        file.putLittleEndian(machine, at: 18)
        file.putLittleEndian(entry, at: 24)
        file.putLittleEndian(UInt64(64), at: 32)
        file.putLittleEndian(programHeaderEntrySize, at: 54)
        file.putLittleEndian(programHeaderCount ?? UInt16(segments.count), at: 56)
        for (index, segment) in segments.enumerated() {
            let at = 64 + index * 56
            file.putLittleEndian(segment.type, at: at)
            file.putLittleEndian(segment.offset, at: at + 8)
            file.putLittleEndian(segment.physicalAddress, at: at + 24)
            file.putLittleEndian(UInt64(segment.bytes.count), at: at + 32)
            file.putLittleEndian(segment.memorySize, at: at + 40)
            file.replaceSubrange(Int(segment.offset)..<(Int(segment.offset) + segment.bytes.count), with: segment.bytes)
        }
        return file
    }
}

@Suite struct ElfKernelTests {
    @Test func parsesTheLoadableSegmentsInAddressOrder() throws {
        var elf = SyntheticELF()
        elf.segments.swapAt(0, 1)
        let kernel = try ElfKernel(elf.bytes)
        #expect(kernel.entry == 0x100_0000)
        #expect(kernel.segments.map(\.physicalAddress) == [0x100_0000, 0x100_4000])
        #expect(kernel.segments.map(\.fileRange) == [0x1000..<0x4000, 0x5000..<0x5800])
        #expect(kernel.requiredMemoryEnd == 0x100_6000)
    }

    @Test func loadsSegmentsZeroesTheirBssAndEntersAtTheEntryPoint() throws {
        let (memory, regions) = try LinuxBootTests.guest()
        let elf = SyntheticELF()
        // Leftovers where .bss goes must not survive the load.
        try memory.write([UInt8](repeating: 0xee, count: 0x1800), at: 0x100_4800)
        let state = try LinuxBoot.load(
            kernel: elf.bytes, initrd: [1, 2, 3], commandLine: "console=ttyS0", memory: memory, ramRegions: regions,
            acpiRSDP: 0xe0000)
        #expect(state.rip == 0x100_0000)
        #expect(state.rsi == X86Layout.zeroPageAddress.rawValue)
        #expect(try memory.readBytes(at: 0x100_0000, count: 0x3000) == elf.segments[0].bytes)
        #expect(try memory.readBytes(at: 0x100_4000, count: 0x800) == elf.segments[1].bytes)
        #expect(try memory.readBytes(at: 0x100_4800, count: 0x1800) == [UInt8](repeating: 0, count: 0x1800))
        // The note was not loaded.
        #expect(try memory.readBytes(at: 0x100_8000, count: 4) == [0, 0, 0, 0])

        // The zero page: a header like a bzImage's, rund as the loader, the command line and initrd.
        let page = try memory.readBytes(at: X86Layout.zeroPageAddress, count: ZeroPage.size)
        #expect(page.littleEndian(UInt16.self, at: 0x1fe) == 0xaa55)
        #expect(page.littleEndian(UInt32.self, at: 0x202) == 0x5372_6448)
        #expect(page.littleEndian(UInt16.self, at: 0x206) == 0x020f)
        #expect(page[0x210] == 0xff)
        #expect(page[0x211] & 0x01 != 0)
        #expect(page.littleEndian(UInt32.self, at: 0x228) == UInt32(X86Layout.commandLineAddress.rawValue))
        #expect(try memory.readBytes(at: X86Layout.commandLineAddress, count: 14) == Array("console=ttyS0".utf8) + [0])
        let initrdAddress = UInt64(page.littleEndian(UInt32.self, at: 0x218))
        #expect(page.littleEndian(UInt32.self, at: 0x21c) == 3)
        #expect(initrdAddress >= 0x100_6000 && initrdAddress + 3 <= UInt64(LinuxBootTests.memoryBytes))
        #expect(try memory.readBytes(at: GuestAddress(initrdAddress), count: 3) == [1, 2, 3])
    }

    /// With the kernel's file, a segment's whole pages come from it (the host's page cache,
    /// shared by every guest of the kernel): a change to the file shows in them, and only in them.
    @Test func wholePagesAreMappedFromTheKernelFileAndTheRestIsCopied() throws {
        var elf = SyntheticELF()
        elf.entry = 0x100_0800
        // Half a page, two whole pages, half a page.
        elf.segments[0] = .init(
            physicalAddress: 0x100_0800, offset: 0x1800, bytes: (0..<0x3000).map { UInt8(truncatingIfNeeded: $0 &* 13) },
            memorySize: 0x3000)
        // File offset and address disagree within a page: never lines up, copied.
        elf.segments.append(
            .init(physicalAddress: 0x100_6000, offset: 0x6100, bytes: [UInt8](repeating: 0x3c, count: 0x1000), memorySize: 0x1000))
        let bytes = elf.bytes
        let path = "/tmp/rund-elf-kernel-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let file = try FileDescriptor.open(path, O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
        try FileSystem.unlink(at: nil, path)
        try bytes.withUnsafeBytes { _ = try file.pwrite($0, at: 0) }

        let (memory, regions) = try LinuxBootTests.guest()
        let state = try LinuxBoot.load(
            kernel: bytes, initrd: nil, commandLine: "", memory: memory, ramRegions: regions, acpiRSDP: nil, kernelFile: file)
        #expect(state.rip == 0x100_0800)
        for segment in elf.segments where segment.type == 1 {
            #expect(try memory.readBytes(at: GuestAddress(segment.physicalAddress), count: segment.bytes.count) == segment.bytes)
        }
        #expect(try memory.readBytes(at: 0x100_4800, count: 0x1800) == [UInt8](repeating: 0, count: 0x1800))

        // File offsets 0x2000..<0x4000 are guest 0x100_1000..<0x100_3000; the rest was copied.
        for offset in [0x1800, 0x2000, 0x3fff, 0x4000, 0x5000, 0x6100] {
            try [UInt8]([0xfe]).withUnsafeBytes { _ = try file.pwrite($0, at: Int64(offset)) }
        }
        #expect(try memory.readBytes(at: 0x100_1000, count: 1) == [0xfe])
        #expect(try memory.readBytes(at: 0x100_2fff, count: 1) == [0xfe])
        #expect(try memory.readBytes(at: 0x100_0800, count: 1) == [elf.segments[0].bytes[0]])
        #expect(try memory.readBytes(at: 0x100_3000, count: 1) == [elf.segments[0].bytes[0x2800]])
        #expect(try memory.readBytes(at: 0x100_4000, count: 1) == [0xd7])
        #expect(try memory.readBytes(at: 0x100_6000, count: 1) == [0x3c])
    }

    @Test func aBzImageIsStillParsedAsOne() throws {
        let (memory, regions) = try LinuxBootTests.guest()
        let state = try LinuxBoot.load(
            kernel: SyntheticKernel().bytes, initrd: nil, commandLine: "", memory: memory, ramRegions: regions, acpiRSDP: nil)
        #expect(state.rip == 0x10_0200)
    }

    @Test func rejectsWhatIsNotAnX86_64Executable() {
        let cases: [(change: (inout SyntheticELF) -> Void, error: BootError)] = [
            ({ $0.elfClass = 1 }, .invalidELFKernel(reason: "not a little-endian 64-bit ELF file")),
            ({ $0.type = 3 }, .invalidELFKernel(reason: "not an executable (ET_EXEC)")),
            ({ $0.machine = 183 }, .kernelNot64Bit),
            ({ $0.programHeaderEntrySize = 64 }, .invalidELFKernel(reason: "program headers are not 56 bytes each")),
            ({ $0.programHeaderCount = 0 }, .invalidELFKernel(reason: "0 program headers (1 to 64 expected)")),
            ({ for index in $0.segments.indices { $0.segments[index].type = 4 } }, .invalidELFKernel(reason: "no loadable segment")),
        ]
        for (change, error) in cases {
            var elf = SyntheticELF()
            change(&elf)
            #expect(throws: error, "\(error)") { try ElfKernel(elf.bytes) }
        }
    }

    @Test func rejectsTruncatedFilesAndSegmentsPastTheEnd() {
        let whole = SyntheticELF().bytes
        #expect(throws: BootError.kernelTruncated(size: 10, expected: 64)) { try ElfKernel(Array(whole.prefix(10))) }
        // The second segment's bytes end at 0x5800.
        #expect(throws: BootError.kernelTruncated(size: 0x5700, expected: 0x5800)) { try ElfKernel(Array(whole.prefix(0x5700))) }
        // A program header table that runs past the end.
        var elf = SyntheticELF()
        elf.programHeaderCount = 64
        let bytes = Array(elf.bytes.prefix(0x200))
        #expect(throws: BootError.self) { try ElfKernel(bytes) }
    }

    @Test func rejectsHostileSegments() {
        // Offset plus size overflows.
        var elf = SyntheticELF()
        var file = elf.bytes
        file.putLittleEndian(UInt64.max - 0x10, at: 64 + 8)
        #expect(throws: BootError.kernelTruncated(size: file.count, expected: Int.max)) { try ElfKernel(file) }

        // More file bytes than memory.
        elf = SyntheticELF()
        elf.segments[1].memorySize = 0x100
        #expect(throws: BootError.invalidELFKernel(reason: "segment 1 holds more file bytes than memory")) { try ElfKernel(elf.bytes) }

        // Over the boot structures below 1 MiB.
        elf = SyntheticELF()
        elf.segments[0].physicalAddress = 0x7000
        #expect(throws: BootError.invalidELFKernel(reason: "segment 0 at 0x7000 is not above 1 MiB")) { try ElfKernel(elf.bytes) }

        // Address plus memory size overflows.
        elf = SyntheticELF()
        elf.segments[1].memorySize = UInt64.max - 0x1000
        #expect(throws: BootError.invalidELFKernel(reason: "segment 1 ends past the 64-bit address space")) { try ElfKernel(elf.bytes) }

        // Overlapping segments.
        elf = SyntheticELF()
        elf.segments[1].physicalAddress = 0x100_2000
        #expect(throws: BootError.invalidELFKernel(reason: "segments at 0x1000000 and 0x1002000 overlap")) { try ElfKernel(elf.bytes) }

        // An entry point in .bss or outside every segment.
        elf = SyntheticELF()
        elf.entry = 0x100_5000
        #expect(throws: BootError.invalidELFKernel(reason: "entry point 0x1005000 is outside the loaded code")) { try ElfKernel(elf.bytes) }
    }

    @Test func aKernelLargerThanTheGuestIsRefusedBeforeAnythingIsWritten() throws {
        let (memory, regions) = try LinuxBootTests.guest(32 << 20)
        var elf = SyntheticELF()
        elf.segments[1].memorySize = 40 << 20
        #expect(throws: BootError.kernelDoesNotFit(neededBytes: 0x100_4000 + (40 << 20), memoryBytes: 32 << 20)) {
            try LinuxBoot.load(kernel: elf.bytes, initrd: nil, commandLine: "", memory: memory, ramRegions: regions, acpiRSDP: nil)
        }
        #expect(try memory.readBytes(at: 0x100_0000, count: 16) == [UInt8](repeating: 0, count: 16))
    }
}
