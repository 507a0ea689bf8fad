/// A segment register as `struct kvm_segment` holds it; flags are 0/1 bytes so the VMM copies
/// them field by field.
public struct SegmentDescriptor: Equatable, Sendable {
    public var base: UInt64
    public var limit: UInt32
    public var selector: UInt16
    public var type: UInt8
    public var present: UInt8
    public var dpl: UInt8
    public var db: UInt8
    public var s: UInt8
    public var l: UInt8
    public var g: UInt8
    public var avl: UInt8
    public var unusable: UInt8

    public init(
        base: UInt64, limit: UInt32, selector: UInt16, type: UInt8, present: UInt8, dpl: UInt8,
        db: UInt8, s: UInt8, l: UInt8, g: UInt8, avl: UInt8, unusable: UInt8
    ) {
        self.base = base
        self.limit = limit
        self.selector = selector
        self.type = type
        self.present = present
        self.dpl = dpl
        self.db = db
        self.s = s
        self.l = l
        self.g = g
        self.avl = avl
        self.unusable = unusable
    }

    /// Decodes GDT entry `index` (8-byte descriptor) into the hidden-register form KVM takes.
    public init(gdtEntry entry: UInt64, index: Int) {
        let flag = { (bit: UInt64) in UInt8((entry >> bit) & 1) }
        let rawLimit = UInt32(entry & 0xffff) | UInt32((entry >> 32) & 0xf_0000)
        let granular = flag(55)
        self.init(
            base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
            limit: granular == 1 ? (rawLimit << 12) | 0xfff : rawLimit,
            selector: UInt16(index * 8),
            type: UInt8((entry >> 40) & 0xf),
            present: flag(47),
            dpl: UInt8((entry >> 45) & 0x3),
            db: flag(54),
            s: flag(44),
            l: flag(53),
            g: granular,
            avl: flag(52),
            unusable: flag(47) == 1 ? 0 : 1)
    }
}

/// A descriptor-table register (GDTR/IDTR).
public struct DescriptorTable: Equatable, Sendable {
    public var base: UInt64
    public var limit: UInt16

    public init(base: UInt64, limit: UInt16) {
        self.base = base
        self.limit = limit
    }
}

/// Register state of the boot vCPU for the 64-bit boot protocol; the VMM turns it into
/// `kvm_regs`/`kvm_sregs`. Secondary vCPUs stay in their reset state and wait for INIT/SIPI.
public struct BootCPUState: Equatable, Sendable {
    public var rip: UInt64
    public var rsp: UInt64
    public var rbp: UInt64
    /// Guest physical address of `boot_params`.
    public var rsi: UInt64
    public var rflags: UInt64
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    public var codeSegment: SegmentDescriptor
    /// For DS, ES, FS, GS and SS.
    public var dataSegment: SegmentDescriptor
    public var tssSegment: SegmentDescriptor
    public var gdt: DescriptorTable
    public var idt: DescriptorTable

    public init(
        rip: UInt64, rsp: UInt64, rbp: UInt64, rsi: UInt64, rflags: UInt64, cr0: UInt64, cr3: UInt64,
        cr4: UInt64, efer: UInt64, codeSegment: SegmentDescriptor, dataSegment: SegmentDescriptor,
        tssSegment: SegmentDescriptor, gdt: DescriptorTable, idt: DescriptorTable
    ) {
        self.rip = rip
        self.rsp = rsp
        self.rbp = rbp
        self.rsi = rsi
        self.rflags = rflags
        self.cr0 = cr0
        self.cr3 = cr3
        self.cr4 = cr4
        self.efer = efer
        self.codeSegment = codeSegment
        self.dataSegment = dataSegment
        self.tssSegment = tssSegment
        self.gdt = gdt
        self.idt = idt
    }
}
