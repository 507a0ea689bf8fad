import GuestMemory

/// Where rund puts things in an x86-64 guest's physical address space (Firecracker's layout,
/// plus the ACPI power-management ports rund's devices emulate).
public enum X86Layout {
    // MARK: Boot structures in low memory

    /// GDT: NULL, CODE, DATA, TSS descriptors.
    public static let gdtAddress: GuestAddress = 0x500
    /// IDT: a single zero entry; the kernel installs its own before enabling interrupts.
    public static let idtAddress: GuestAddress = 0x520
    /// `boot_params` ("zero page") handed to the kernel in RSI.
    public static let zeroPageAddress: GuestAddress = 0x7000
    /// Initial stack pointer (grows down below the page tables).
    public static let bootStackPointer: UInt64 = 0x8ff0
    /// Identity-map page tables: PML4, PDPT, then `identityMappedGiB` page directories.
    public static let pml4Address: GuestAddress = 0x9000
    public static let pdptAddress: GuestAddress = 0xa000
    public static let pageDirectoryAddress: GuestAddress = 0xb000
    /// The boot page tables identity-map [0, 4 GiB) with 2 MiB pages (4 directories at 0xb000..0xefff).
    public static let identityMappedGiB = 4
    /// Kernel command line (NUL-terminated).
    public static let commandLineAddress: GuestAddress = 0x20000
    /// Longest command line including its NUL.
    public static let commandLineCapacity = 2048

    /// End of conventional memory: [0, ebdaStart) is RAM, [ebdaStart, 1 MiB) reserved.
    public static let ebdaStart: GuestAddress = 0x9fc00
    /// The protected-mode kernel is loaded here ("high memory").
    public static let himemStart: GuestAddress = 0x10_0000
    /// 64-bit entry point offset from the protected-mode load address (boot protocol 2.12+).
    public static let kernel64BitEntryOffset: UInt64 = 0x200

    // MARK: ACPI

    /// RSDP; the tables follow it inside [acpiStart, acpiEnd).
    public static let rsdpAddress: GuestAddress = 0xe0000
    public static let acpiStart: GuestAddress = 0xe0000
    public static let acpiEnd: GuestAddress = 0x10_0000

    /// FADT sleep control register (I/O port, 8 bit). A write with SLP_EN (bit 5) set and
    /// SLP_TYP (bits 4:2) == `s5SleepType` asks for power off.
    public static let acpiSleepControlPort: UInt16 = 0x600
    /// FADT sleep status register (I/O port, 8 bit). The guest writes WAK_STS (0x80) before sleeping.
    public static let acpiSleepStatusPort: UInt16 = 0x601
    /// FADT reset register (I/O port, 8 bit); writing `acpiResetValue` asks for a reboot.
    public static let acpiResetPort: UInt16 = 0x602
    public static let acpiResetValue: UInt8 = 0x01
    /// The SLP_TYP value of the DSDT's `\_S5_` package.
    public static let s5SleepType: UInt8 = 5
    /// SLP_EN bit of the sleep control register.
    public static let sleepEnableBit: UInt8 = 0x20

    /// True when `value` written to `acpiSleepControlPort` requests power off (S5).
    public static func isPowerOffRequest(_ value: UInt8) -> Bool {
        value & sleepEnableBit != 0 && (value >> 2) & 0x7 == s5SleepType
    }

    // MARK: MMIO and interrupts

    /// 32-bit MMIO gap: the top GiB below 4 GiB holds no RAM.
    public static let mmioGapStart: GuestAddress = 0xc000_0000
    public static let mmioGapEnd: GuestAddress = 0x1_0000_0000
    /// First virtio-mmio slot; slot n is at `virtioMMIOBase + n * virtioMMIOSlotSize`.
    public static let virtioMMIOBase: GuestAddress = 0xd000_0000
    public static let virtioMMIOSlotSize: UInt64 = 0x1000
    /// Virtio-mmio slot n raises GSI `firstVirtioGSI + n` (edge-triggered, active high).
    public static let firstVirtioGSI: UInt32 = 5
    /// The in-kernel IOAPIC has 24 pins.
    public static let lastIOAPICGSI: UInt32 = 23
    public static let maxVirtioMMIODevices = Int(lastIOAPICGSI - firstVirtioGSI + 1)

    public static let ioapicAddress: GuestAddress = 0xfec0_0000
    public static let localAPICAddress: GuestAddress = 0xfee0_0000
    /// `KVM_SET_TSS_ADDRESS`: three pages just below the BIOS ROM alias, inside the MMIO gap.
    public static let tssAddress: GuestAddress = 0xfffb_d000

    public static let com1Port: UInt16 = 0x3f8
    public static let com1PortCount: UInt16 = 8
    public static let com1GSI: UInt32 = 4

    /// xAPIC ids are 8 bits and 0xff is broadcast.
    public static let maxVCPUs = 254

    /// Guest physical address of virtio-mmio slot `index` (nil past the address space, which
    /// no slot index below `maxVirtioMMIODevices` comes near).
    public static func virtioMMIOAddress(slot index: Int) -> GuestAddress? {
        guard let slot = UInt64(exactly: index) else { return nil }
        let (offset, overflow) = slot.multipliedReportingOverflow(by: virtioMMIOSlotSize)
        return overflow ? nil : virtioMMIOBase.checkedAdding(offset)
    }

    /// GSI of virtio-mmio slot `index`.
    public static func virtioGSI(slot index: Int) -> UInt32 {
        firstVirtioGSI + UInt32(index)
    }

    // MARK: Persistent memory (virtio-pmem)

    /// virtio-pmem ranges start here: above the most RAM a VM may have (64 GiB, which ends at
    /// 65 GiB past the MMIO gap), and at a fixed address so that a saved kernel and a VM
    /// restored from it agree on where its pmem lies.
    public static let pmemBase: GuestAddress = 0x20_0000_0000
    /// The guest's memory hotplug maps whole 2 MiB subsections: every range starts and ends on one.
    public static let pmemAlignment: UInt64 = 2 << 20

    /// Where pmem ranges holding files of `fileSizes` bytes go: one after another from
    /// `pmemBase`, each padded to `pmemAlignment`. Nil when a size or the total overflows.
    public static func pmemRanges(fileSizes: [UInt64]) -> [(base: GuestAddress, size: UInt64)]? {
        var next = pmemBase.rawValue
        var ranges: [(base: GuestAddress, size: UInt64)] = []
        for fileSize in fileSizes {
            let (padded, overflow) = fileSize.addingReportingOverflow(pmemAlignment - 1)
            guard !overflow, fileSize > 0 else { return nil }
            let size = padded & ~(pmemAlignment - 1)
            let (end, endOverflow) = next.addingReportingOverflow(size)
            guard !endOverflow else { return nil }
            ranges.append((base: GuestAddress(next), size: size))
            next = end
        }
        return ranges
    }

    /// Guest RAM for `memoryBytes` (rounded down to 4 KiB): one region below the MMIO gap and,
    /// past 3 GiB, the rest from 4 GiB up.
    public static func ramRegions(memoryBytes: Int) -> [(base: GuestAddress, size: Int)] {
        let total = UInt64(max(memoryBytes, 0)) & ~0xfff
        guard total > 0 else { return [] }
        let low = min(total, mmioGapStart.rawValue)
        var regions: [(base: GuestAddress, size: Int)] = [(base: 0, size: Int(low))]
        if total > low {
            regions.append((base: mmioGapEnd, size: Int(total - low)))
        }
        return regions
    }
}
