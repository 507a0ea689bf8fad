import GuestMemory
import Testing
@testable import Boot

@Suite struct LinuxBootTests {
    static let memoryBytes = 256 << 20

    static func guest(_ bytes: Int = memoryBytes) throws -> (GuestMemory, [(base: GuestAddress, size: Int)]) {
        let regions = X86Layout.ramRegions(memoryBytes: bytes)
        return (try GuestMemory.anonymous(regions), regions)
    }

    @Test func loadsKernelInitrdAndCommandLine() throws {
        let (memory, regions) = try Self.guest()
        let kernel = SyntheticKernel()
        let initrd = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 ^ 0x55) }
        let state = try LinuxBoot.load(
            kernel: kernel.bytes, initrd: initrd, commandLine: "console=ttyS0 quiet",
            memory: memory, ramRegions: regions, acpiRSDP: 0xe0000)
        #expect(state.rip == 0x10_0200)
        #expect(
            try memory.readBytes(at: 0x10_0000, count: kernel.protectedModeSize)
                == (0..<kernel.protectedModeSize).map(SyntheticKernel.pattern))
        #expect(try memory.readBytes(at: 0x20000, count: 20) == Array("console=ttyS0 quiet".utf8) + [0])

        // initrd at the top of RAM, page-aligned, and recorded in the zero page.
        let zp = X86Layout.zeroPageAddress
        let initrdAddress =
            UInt64(try memory.load(UInt32.self, at: zp + 0x218))
            | UInt64(try memory.load(UInt32.self, at: zp + 0x0c0)) << 32
        #expect(initrdAddress == (UInt64(Self.memoryBytes) - 10_000) & ~0xfff)
        #expect(try memory.load(UInt32.self, at: zp + 0x21c) == 10_000)
        #expect(try memory.load(UInt32.self, at: zp + 0x0c4) == 0)
        #expect(try memory.readBytes(at: GuestAddress(initrdAddress), count: initrd.count) == initrd)
    }

    @Test func zeroPageLayoutByteByByte() throws {
        let (memory, regions) = try Self.guest()
        let kernel = SyntheticKernel()
        let file = kernel.bytes
        _ = try LinuxBoot.load(
            kernel: file, initrd: nil, commandLine: "root=/dev/vda", memory: memory,
            ramRegions: regions, acpiRSDP: 0xe0000)
        let page = try memory.readBytes(at: X86Layout.zeroPageAddress, count: 4096)
        func u16(_ o: Int) -> UInt16 { page.littleEndian(UInt16.self, at: o) }
        func u32(_ o: Int) -> UInt32 { page.littleEndian(UInt32.self, at: o) }
        func u64(_ o: Int) -> UInt64 { page.littleEndian(UInt64.self, at: o) }

        // Fields the loader writes.
        #expect(u64(0x070) == 0xe0000)  // acpi_rsdp_addr
        #expect(u32(0x0c0) == 0 && u32(0x0c4) == 0)  // ext_ramdisk_image/size
        #expect(u32(0x0c8) == 0)  // ext_cmd_line_ptr
        #expect(page[0x1e8] == 3)  // e820_entries
        #expect(page[0x1ef] == 0)  // sentinel, though the file has 0x5a there
        #expect(u16(0x1fe) == 0xaa55)  // boot_flag
        #expect(u32(0x202) == 0x5372_6448)  // "HdrS"
        #expect(page[0x210] == 0xff)  // type_of_loader
        #expect(u32(0x218) == 0 && u32(0x21c) == 0)  // no ramdisk
        #expect(u32(0x228) == 0x20000)  // cmd_line_ptr
        #expect(u32(0x238) == 14)  // cmdline_size: "root=/dev/vda" + NUL

        // Everything else in the header comes from the file unchanged.
        let written: Set<Int> = Set(0x210...0x210).union(0x218..<0x220).union(0x228..<0x22c).union(0x238..<0x23c)
        for offset in 0x1f1..<0x26c where !written.contains(offset) {
            #expect(page[offset] == file[offset], "setup header byte 0x\(String(offset, radix: 16))")
        }
        // And nothing outside header, e820 and the fields above is set.
        let e820 = 0x2d0..<(0x2d0 + 3 * 20)
        let set: Set<Int> = Set(0x070..<0x078).union(0x1e8...0x1e8).union(0x1f1..<0x26c).union(e820)
        for offset in 0..<4096 where !set.contains(offset) {
            #expect(page[offset] == 0, "zero page byte 0x\(String(offset, radix: 16)) should be 0")
        }

        // e820: conventional RAM, the reserved BIOS/ACPI area, RAM from 1 MiB.
        let entries = (0..<3).map { i -> (UInt64, UInt64, UInt32) in
            let at = 0x2d0 + i * 20
            return (u64(at), u64(at + 8), u32(at + 16))
        }
        #expect(entries[0] == (0, 0x9fc00, 1))
        #expect(entries[1] == (0x9fc00, 0x100000 - 0x9fc00, 2))
        #expect(entries[2] == (0x100000, UInt64(Self.memoryBytes) - 0x100000, 1))
    }

    @Test func e820SplitsAroundTheMMIOGap() {
        let regions = X86Layout.ramRegions(memoryBytes: 5 << 30)
        #expect(regions.count == 2)
        #expect(regions[0].base == 0 && regions[0].size == 3 << 30)
        #expect(regions[1].base == GuestAddress(4 << 30) && regions[1].size == 2 << 30)
        let map = E820Entry.memoryMap(ramRegions: regions)
        #expect(
            map == [
                E820Entry(address: 0, size: 0x9fc00, kind: .ram),
                E820Entry(address: 0x9fc00, size: 0x60400, kind: .reserved),
                E820Entry(address: 0x100000, size: (3 << 30) - 0x100000, kind: .ram),
                E820Entry(address: GuestAddress(4 << 30), size: 2 << 30, kind: .ram),
            ])
        #expect(X86Layout.ramRegions(memoryBytes: 3 << 30).count == 1)
        #expect(X86Layout.ramRegions(memoryBytes: (1 << 30) + 100)[0].size == 1 << 30)
        #expect(X86Layout.ramRegions(memoryBytes: 0).isEmpty)
        #expect(X86Layout.ramRegions(memoryBytes: -5).isEmpty)
    }

    @Test func gdtIDTAndSegments() throws {
        let (memory, regions) = try Self.guest()
        let state = try LinuxBoot.load(
            kernel: SyntheticKernel().bytes, initrd: nil, commandLine: "", memory: memory,
            ramRegions: regions, acpiRSDP: nil)
        #expect(try memory.load(UInt64.self, at: 0x500) == 0)
        #expect(try memory.load(UInt64.self, at: 0x508) == 0x00af_9b00_0000_ffff)
        #expect(try memory.load(UInt64.self, at: 0x510) == 0x00cf_9300_0000_ffff)
        #expect(try memory.load(UInt64.self, at: 0x518) == 0x008f_8b00_0000_ffff)
        #expect(try memory.load(UInt64.self, at: 0x520) == 0)
        #expect(state.gdt == DescriptorTable(base: 0x500, limit: 31))
        #expect(state.idt == DescriptorTable(base: 0x520, limit: 7))

        #expect(
            state.codeSegment
                == SegmentDescriptor(
                    base: 0, limit: 0xffff_ffff, selector: 0x08, type: 0xb, present: 1,
                    dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0))
        #expect(
            state.dataSegment
                == SegmentDescriptor(
                    base: 0, limit: 0xffff_ffff, selector: 0x10, type: 0x3, present: 1,
                    dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0))
        #expect(
            state.tssSegment
                == SegmentDescriptor(
                    base: 0, limit: 0xffff_ffff, selector: 0x18, type: 0xb, present: 1,
                    dpl: 0, db: 0, s: 0, l: 0, g: 1, avl: 0, unusable: 0))
        #expect(state.rsp == 0x8ff0 && state.rbp == 0x8ff0)
        #expect(state.rsi == 0x7000)
        #expect(state.rflags == 2)
        #expect(state.cr3 == 0x9000)
        #expect(state.cr0 & 0x8000_0001 == 0x8000_0001)
        #expect(state.cr4 == 0x20)
        #expect(state.efer == 0x500)
        // No RSDP given: the field stays 0.
        #expect(try memory.load(UInt64.self, at: 0x7070) == 0)
    }

    @Test func segmentDecodingHandlesBaseAndByteGranularity() {
        let entry = BootGDT.entry(flags: 0x0093, base: 0x1234_5678, limit: 0xabcde)
        let segment = SegmentDescriptor(gdtEntry: entry, index: 5)
        #expect(segment.base == 0x1234_5678)
        #expect(segment.limit == 0xabcde)
        #expect(segment.selector == 40)
        #expect(segment.g == 0)
        #expect(SegmentDescriptor(gdtEntry: 0, index: 0).unusable == 1)
    }

    @Test func identityPageTablesCoverFourGiB() throws {
        let (memory, regions) = try Self.guest()
        _ = try LinuxBoot.load(
            kernel: SyntheticKernel().bytes, initrd: nil, commandLine: "", memory: memory,
            ramRegions: regions, acpiRSDP: nil)
        #expect(try memory.load(UInt64.self, at: 0x9000) == 0xa003)
        #expect(try memory.load(UInt64.self, at: 0x9008) == 0)
        for gib in 0..<4 {
            #expect(try memory.load(UInt64.self, at: 0xa000 + UInt64(gib * 8)) == 0xb003 + UInt64(gib) * 0x1000)
        }
        #expect(try memory.load(UInt64.self, at: 0xa020) == 0)
        #expect(try memory.load(UInt64.self, at: 0xb000) == 0x83)
        #expect(try memory.load(UInt64.self, at: 0xb008) == 0x20_0083)
        #expect(try memory.load(UInt64.self, at: 0xeff8) == 0xffe0_0083)  // last 2 MiB below 4 GiB
    }

    @Test func rejectsInitrdThatDoesNotFitWithoutWritingAnything() throws {
        let (memory, regions) = try Self.guest(64 << 20)
        let initrd = [UInt8](repeating: 1, count: 60 << 20)
        #expect(throws: BootError.initrdDoesNotFit(initrdBytes: 60 << 20, memoryBytes: 64 << 20)) {
            try LinuxBoot.load(
                kernel: SyntheticKernel().bytes, initrd: initrd, commandLine: "", memory: memory,
                ramRegions: regions, acpiRSDP: nil)
        }
        #expect(try memory.load(UInt64.self, at: 0x10_0000) == 0)
        #expect(try memory.load(UInt16.self, at: X86Layout.zeroPageAddress + 0x1fe) == 0)
    }

    @Test func initrdStaysBelowInitrdAddrMax() throws {
        let (memory, regions) = try Self.guest()
        var kernel = SyntheticKernel()
        kernel.initrdAddrMax = 0x37ff_ffff >> 4  // 56 MiB - 1
        _ = try LinuxBoot.load(
            kernel: kernel.bytes, initrd: [1, 2, 3], commandLine: "", memory: memory,
            ramRegions: regions, acpiRSDP: nil)
        #expect(try memory.load(UInt32.self, at: X86Layout.zeroPageAddress + 0x218) == (0x380_0000 - 3) & ~0xfff)
    }

    @Test func rejectsKernelLargerThanMemoryAndTinyMemory() throws {
        var kernel = SyntheticKernel()
        kernel.initSize = 200 << 20
        let (memory, regions) = try Self.guest(128 << 20)
        #expect(throws: BootError.kernelDoesNotFit(neededBytes: (16 + 200) << 20, memoryBytes: 128 << 20)) {
            try LinuxBoot.load(
                kernel: kernel.bytes, initrd: nil, commandLine: "", memory: memory,
                ramRegions: regions, acpiRSDP: nil)
        }
        let (small, smallRegions) = try Self.guest(512 << 10)
        #expect(throws: BootError.kernelDoesNotFit(neededBytes: (16 + 8) << 20, memoryBytes: 512 << 10)) {
            try LinuxBoot.load(
                kernel: SyntheticKernel().bytes, initrd: nil, commandLine: "", memory: small,
                ramRegions: smallRegions, acpiRSDP: nil)
        }
    }

    @Test func rejectsBadCommandLines() throws {
        let (memory, regions) = try Self.guest()
        var kernel = SyntheticKernel()
        kernel.cmdlineSize = 255
        #expect(throws: BootError.commandLineTooLong(length: 256, maximum: 255)) {
            try LinuxBoot.load(
                kernel: kernel.bytes, initrd: nil, commandLine: String(repeating: "a", count: 256),
                memory: memory, ramRegions: regions, acpiRSDP: nil)
        }
        #expect(throws: BootError.commandLineContainsNUL) {
            try LinuxBoot.load(
                kernel: SyntheticKernel().bytes, initrd: nil, commandLine: "a\0b", memory: memory,
                ramRegions: regions, acpiRSDP: nil)
        }
    }

    @Test func longModeEntryForFreestandingGuests() throws {
        let memory = try GuestMemory.anonymous([(base: 0, size: 1 << 20)])
        let state = try LinuxBoot.prepareLongModeEntry(at: 0x4000, memory: memory)
        #expect(state.rip == 0x4000)
        #expect(try memory.load(UInt64.self, at: 0x508) == 0x00af_9b00_0000_ffff)
        #expect(try memory.load(UInt64.self, at: 0x9000) == 0xa003)
        let tiny = try GuestMemory.anonymous([(base: 0, size: 0x8000)])
        #expect(throws: BootError.self) { try LinuxBoot.prepareLongModeEntry(at: 0x1000, memory: tiny) }
    }
}
