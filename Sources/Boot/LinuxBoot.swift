import GuestMemory
import HostOS

/// Loads a kernel (a bzImage, or an uncompressed ELF `vmlinux`), initrd and command line into
/// guest memory per the 64-bit boot protocol and returns the boot vCPU's registers.
public enum LinuxBoot {
    /// Writes kernel, initrd, command line, zero page, GDT/IDT and page tables.
    ///
    /// - Parameters:
    ///   - kernel: a bzImage, or an ELF file (told apart by the ELF magic).
    ///   - ramRegions: the guest's RAM (as from `X86Layout.ramRegions`), used for e820 and placement.
    ///   - acpiRSDP: the RSDP address from `ACPITables.install`, or nil for a guest without ACPI.
    ///   - kernelFile: the file `kernel` was read from, if it stays as it is while the guest runs:
    ///     an ELF kernel's whole pages are then mapped from it copy-on-write rather than copied
    ///     (`ElfKernel.write`).
    /// Nothing the guest can observe depends on leftovers: every structure is written in full.
    public static func load(
        kernel: [UInt8], initrd: [UInt8]?, commandLine: String, memory: GuestMemory,
        ramRegions: [(base: GuestAddress, size: Int)], acpiRSDP: GuestAddress?, kernelFile: FileDescriptor? = nil
    ) throws(BootError) -> BootCPUState {
        let image = ElfKernel.hasMagic(kernel) ? KernelImage.elf(try ElfKernel(kernel)) : .bzImage(try BzImage(kernel))
        let maximum = min(KernelCommandLine.maximumLength, image.commandLineMax > 0 ? image.commandLineMax : Int.max)
        try KernelCommandLine.validate(commandLine, maximum: maximum)

        let memoryBytes = ramRegions.reduce(UInt64(0)) { $0 + UInt64($1.size) }
        // Everything the boot needs lives in the region that starts at 0 (below the MMIO gap).
        let lowEnd = ramRegions.first { $0.base == 0 }.map { UInt64($0.size) } ?? 0
        // The kernel sits above every boot structure, so if it fits, they do.
        let kernelEnd = image.requiredMemoryEnd
        guard kernelEnd <= lowEnd else { throw .kernelDoesNotFit(neededBytes: kernelEnd, memoryBytes: memoryBytes) }

        var initrdAddress: GuestAddress?
        if let initrd, !initrd.isEmpty {
            initrdAddress = try placeInitrd(
                size: initrd.count, addressMax: image.initrdAddressMax, lowEnd: lowEnd, kernelEnd: kernelEnd,
                memoryBytes: memoryBytes)
        }

        var zeroPage = ZeroPage(setupHeader: image.setupHeader)
        do throws(GuestMemoryError) {
            try image.write(into: memory, sharingPagesOf: kernelFile)
            if let initrd, let initrdAddress {
                try memory.write(initrd, at: initrdAddress)
                zeroPage.setRamdisk(address: initrdAddress, size: UInt64(initrd.count))
            }
            let line = Array(commandLine.utf8) + [0]
            try memory.zero(at: X86Layout.commandLineAddress, length: X86Layout.commandLineCapacity)
            try memory.write(line, at: X86Layout.commandLineAddress)
            zeroPage.setCommandLine(address: X86Layout.commandLineAddress, size: line.count)
            zeroPage.setMemoryMap(E820Entry.memoryMap(ramRegions: ramRegions))
            if let acpiRSDP { zeroPage.setACPIRSDP(address: acpiRSDP) }
            try memory.write(zeroPage.bytes, at: X86Layout.zeroPageAddress)
        } catch {
            throw .guestMemory(error)
        }
        return try prepareLongModeEntry(at: try image.entry(), memory: memory)
    }

    /// Writes the GDT, IDT and identity page tables and returns a long-mode state entering at
    /// `entry` (RSI = zero page address). Also serves freestanding 64-bit test guests.
    public static func prepareLongModeEntry(at entry: GuestAddress, memory: GuestMemory) throws(BootError) -> BootCPUState {
        do throws(GuestMemoryError) {
            try BootGDT.write(into: memory)
            try BootPageTables.write(into: memory)
        } catch {
            throw .guestMemory(error)
        }
        return bootCPUState(entry: entry)
    }

    /// Copies a slice without first copying it into an Array of its own.
    static func write(_ bytes: ArraySlice<UInt8>, at address: GuestAddress, into memory: GuestMemory) throws(GuestMemoryError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(GuestMemoryError) in try memory.write(raw, at: address) } }.get()
    }

    /// Highest page-aligned address below both initrd_addr_max and the end of low RAM,
    /// clear of the kernel's decompression area.
    static func placeInitrd(
        size: Int, addressMax: UInt32, lowEnd: UInt64, kernelEnd: UInt64,
        memoryBytes: UInt64
    ) throws(BootError) -> GuestAddress {
        let top = min(UInt64(addressMax) + 1, lowEnd)
        let bytes = UInt64(size)
        guard bytes <= top, (top - bytes) & ~0xfff >= kernelEnd else {
            throw .initrdDoesNotFit(initrdBytes: size, memoryBytes: memoryBytes)
        }
        return GuestAddress((top - bytes) & ~0xfff)
    }

    /// Long mode with paging on the identity map, flat segments, stack below the page tables.
    static func bootCPUState(entry: GuestAddress) -> BootCPUState {
        let pe: UInt64 = 1 << 0, et: UInt64 = 1 << 4, pg: UInt64 = 1 << 31
        let pae: UInt64 = 1 << 5
        let lme: UInt64 = 1 << 8, lma: UInt64 = 1 << 10
        let gdt = BootGDT.entries
        return BootCPUState(
            rip: entry.rawValue,
            rsp: X86Layout.bootStackPointer,
            rbp: X86Layout.bootStackPointer,
            rsi: X86Layout.zeroPageAddress.rawValue,
            rflags: 0x2,  // bit 1 is reserved and always set
            cr0: pe | et | pg,
            cr3: X86Layout.pml4Address.rawValue,
            cr4: pae,
            efer: lme | lma,
            codeSegment: SegmentDescriptor(gdtEntry: gdt[1], index: 1),
            dataSegment: SegmentDescriptor(gdtEntry: gdt[2], index: 2),
            tssSegment: SegmentDescriptor(gdtEntry: gdt[3], index: 3),
            gdt: BootGDT.table,
            idt: BootGDT.interruptTable)
    }
}

/// The two kinds of kernel file `LinuxBoot` loads, and what the boot needs of each.
enum KernelImage {
    case bzImage(BzImage)
    case elf(ElfKernel)

    var commandLineMax: Int {
        switch self {
        case .bzImage(let image): image.commandLineMax
        case .elf: KernelCommandLine.maximumLength
        }
    }

    var requiredMemoryEnd: UInt64 {
        switch self {
        case .bzImage(let image): image.requiredMemoryEnd
        case .elf(let kernel): kernel.requiredMemoryEnd
        }
    }

    var initrdAddressMax: UInt32 {
        switch self {
        case .bzImage(let image): image.initrdAddressMax
        // What an x86-64 bzImage's own header says.
        case .elf: 0x7fff_ffff
        }
    }

    /// The setup header the zero page starts from: the bzImage's own, or for an ELF kernel (which
    /// has none) the fields a bzImage of protocol 2.15 would carry.
    var setupHeader: [UInt8] {
        switch self {
        case .bzImage(let image):
            return image.setupHeader
        case .elf:
            var header = [UInt8](repeating: 0, count: SetupHeader.endV212 - SetupHeader.start)
            header.putLittleEndian(SetupHeader.protocolVersionOfELFBoot, at: SetupHeader.version - SetupHeader.start)
            header[SetupHeader.loadflags - SetupHeader.start] = SetupHeader.loadedHigh
            return header
        }
    }

    /// A bzImage is always copied: the guest decompresses it over itself.
    func write(into memory: GuestMemory, sharingPagesOf file: FileDescriptor?) throws(GuestMemoryError) {
        switch self {
        case .bzImage(let image): try LinuxBoot.write(image.protectedModeKernel, at: X86Layout.himemStart, into: memory)
        case .elf(let kernel): try kernel.write(into: memory, sharingPagesOf: file)
        }
    }

    /// The 64-bit entry: 0x200 into a bzImage's protected-mode code, or the ELF entry point.
    func entry() throws(BootError) -> GuestAddress {
        switch self {
        case .bzImage:
            guard let entry = X86Layout.himemStart.checkedAdding(X86Layout.kernel64BitEntryOffset) else {
                throw .guestMemory(.addressOverflow(X86Layout.himemStart, offset: X86Layout.kernel64BitEntryOffset))
            }
            return entry
        case .elf(let kernel):
            return kernel.entry
        }
    }
}
