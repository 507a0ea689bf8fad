import Boot
import CLinux

// Conversions between Boot's plain descriptions of CPU state and KVM's structs. All raw
// kvm_* field fiddling lives here.

extension kvm_segment {
    init(_ segment: SegmentDescriptor) {
        self.init(
            base: segment.base, limit: segment.limit, selector: segment.selector, type: segment.type,
            present: segment.present, dpl: segment.dpl, db: segment.db, s: segment.s, l: segment.l,
            g: segment.g, avl: segment.avl, unusable: segment.unusable, padding: 0)
    }
}

extension kvm_sregs {
    /// The vCPU's current special registers with the boot state laid over them.
    func applying(_ boot: BootCPUState) -> kvm_sregs {
        var sregs = self
        sregs.cs = kvm_segment(boot.codeSegment)
        let data = kvm_segment(boot.dataSegment)
        sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data; sregs.ss = data
        sregs.tr = kvm_segment(boot.tssSegment)
        sregs.gdt.base = boot.gdt.base
        sregs.gdt.limit = boot.gdt.limit
        sregs.idt.base = boot.idt.base
        sregs.idt.limit = boot.idt.limit
        sregs.cr0 = boot.cr0
        sregs.cr3 = boot.cr3
        sregs.cr4 = boot.cr4
        sregs.efer = boot.efer
        return sregs
    }
}

extension kvm_regs {
    init(_ boot: BootCPUState) {
        self.init()
        rip = boot.rip
        rsp = boot.rsp
        rbp = boot.rbp
        rsi = boot.rsi
        rflags = boot.rflags
    }
}

extension kvm_fpu {
    /// x87 control word and MXCSR at their reset values, as a freshly booted CPU has them.
    static var bootState: kvm_fpu {
        var fpu = kvm_fpu()
        fpu.fcw = FPUBootState.fcw
        fpu.mxcsr = FPUBootState.mxcsr
        return fpu
    }
}

extension CPUIDEntry {
    init(_ entry: kvm_cpuid_entry2) {
        self.init(
            function: entry.function, index: entry.index, flags: entry.flags,
            eax: entry.eax, ebx: entry.ebx, ecx: entry.ecx, edx: entry.edx)
    }
}

extension kvm_cpuid_entry2 {
    init(_ entry: CPUIDEntry) {
        self.init()
        function = entry.function
        index = entry.index
        flags = entry.flags
        eax = entry.eax
        ebx = entry.ebx
        ecx = entry.ecx
        edx = entry.edx
    }
}
