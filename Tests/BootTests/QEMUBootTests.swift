#if canImport(Glibc)
import Glibc
#endif
import GuestMemory
import HostOS
import Testing
@testable import Boot

/// A 64 KiB firmware image for QEMU that does what the VMM does with KVM_SET_SREGS/REGS: from
/// the reset vector it enters long mode with `BootCPUState`'s control registers, page tables,
/// GDT and selectors, then jumps to the kernel with RSI = zero page. This lets the real Debian
/// kernel boot from our boot_params, e820 and ACPI tables under QEMU's TCG, where this host's
/// KVM (PVM) cannot run it.
enum TrampolineROM {
    static let size = 0x10000
    /// The ROM's last 64 KiB alias below 4 GiB, where the CPU starts (CS base 0xffff0000).
    static let base: UInt32 = 0xffff_0000

    static func make(_ state: BootCPUState) -> [UInt8] {
        // Assembled from the annotated source below with GNU as; immediates patched at the marked
        // offsets. Layout: 16-bit code at 0x00, 32-bit at 0x1a, 64-bit at 0x59, temp GDT at 0x88,
        // its GDTR at 0xa0, the GDTR of our GDT at 0xa6.
        var code: [UInt8] = [
            0xfa,  // cli
            0x2e, 0x66, 0x0f, 0x01, 0x16, 0xa0, 0x00,  // lgdtl %cs:0xa0 (temporary flat 32-bit GDT)
            0x0f, 0x20, 0xc0,  // mov %cr0, %eax
            0x66, 0x83, 0xc8, 0x01,  // or $1, %eax (PE)
            0x0f, 0x22, 0xc0,  // mov %eax, %cr0
            0x66, 0xea, 0x1a, 0x00, 0xff, 0xff, 0x08, 0x00,  // ljmpl $0x08, $0xffff001a
            0xb8, 0x10, 0x00, 0x00, 0x00,  // 0x1a: mov $0x10, %eax
            0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0,  // mov %eax, %ds/%es/%ss
            0xb8, 0, 0, 0, 0,  // 0x25: mov $cr4, %eax
            0x0f, 0x22, 0xe0,  // mov %eax, %cr4
            0xb8, 0, 0, 0, 0,  // 0x2d: mov $cr3, %eax
            0x0f, 0x22, 0xd8,  // mov %eax, %cr3
            0xb9, 0x80, 0x00, 0x00, 0xc0,  // mov $0xc0000080 (EFER), %ecx
            0x31, 0xd2,  // xor %edx, %edx
            0xb8, 0, 0, 0, 0,  // 0x3c: mov $efer, %eax
            0x0f, 0x30,  // wrmsr
            0xb8, 0, 0, 0, 0,  // 0x43: mov $cr0, %eax
            0x0f, 0x22, 0xc0,  // mov %eax, %cr0 (paging on: compatibility mode)
            0x0f, 0x01, 0x15, 0xa6, 0x00, 0xff, 0xff,  // lgdt 0xffff00a6 (our GDT)
            0xea, 0x59, 0x00, 0xff, 0xff, 0, 0,  // 0x52: ljmp $cs, $0xffff0059
            0xb8, 0, 0, 0, 0,  // 0x59: mov $ds, %eax
            0x8e, 0xd8, 0x8e, 0xc0, 0x8e, 0xd0, 0x8e, 0xe0, 0x8e, 0xe8,  // ds, es, ss, fs, gs
            0x48, 0xc7, 0xc4, 0, 0, 0, 0,  // 0x68: mov $rsp, %rsp
            0x48, 0xc7, 0xc5, 0, 0, 0, 0,  // 0x6f: mov $rbp, %rbp
            0xbe, 0, 0, 0, 0,  // 0x76: mov $rsi, %esi
            0xb8, 0, 0, 0, 0,  // 0x7b: mov $rip, %eax
            0xff, 0xe0,  // jmp *%rax
            0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00,  // nop (align 8)
        ]
        code += [UInt8](repeating: 0, count: 8)  // 0x88: temp GDT: null,
        code.appendLittleEndian(UInt64(0x00cf_9a00_0000_ffff))  // flat 32-bit code,
        code.appendLittleEndian(UInt64(0x00cf_9200_0000_ffff))  // flat data
        code.appendLittleEndian(UInt16(23))  // 0xa0: its GDTR
        code.appendLittleEndian(base + 0x88)
        code.appendLittleEndian(state.gdt.limit)  // 0xa6: our GDTR
        code.appendLittleEndian(UInt32(state.gdt.base))

        code.putLittleEndian(UInt32(state.cr4), at: 0x26)
        code.putLittleEndian(UInt32(state.cr3), at: 0x2e)
        code.putLittleEndian(UInt32(state.efer & ~(1 << 10)), at: 0x3d)  // LMA is set by the CPU
        code.putLittleEndian(UInt32(state.cr0), at: 0x44)
        code.putLittleEndian(state.codeSegment.selector, at: 0x57)
        code.putLittleEndian(UInt32(state.dataSegment.selector), at: 0x5a)
        code.putLittleEndian(UInt32(state.rsp), at: 0x6b)
        code.putLittleEndian(UInt32(state.rbp), at: 0x72)
        code.putLittleEndian(UInt32(state.rsi), at: 0x77)
        code.putLittleEndian(UInt32(state.rip), at: 0x7c)

        var rom = code + [UInt8](repeating: 0xf4, count: size - code.count)  // hlt
        rom.replaceSubrange(0xfff0..<0xfff3, with: [0xe9, 0x0d, 0x00])  // reset vector: jmp 0x0000
        return rom
    }
}

/// A newc cpio initramfs: busybox and an /init script that reports what the guest sees.
enum ProbeInitramfs {
    static let busybox = "/bin/busybox"
    static var isAvailable: Bool { access(busybox, X_OK) == 0 }

    static let initScript = """
        #!/bin/busybox sh
        /bin/busybox mount -t proc proc /proc
        /bin/busybox mount -t sysfs sysfs /sys
        echo "RUND-CPUS $(/bin/busybox nproc)"
        for d in /sys/bus/acpi/devices/*; do echo "RUND-ACPI ${d##*/}"; done
        echo RUND-DONE
        # Let the UART drain (a few seconds: a loaded host may keep the emulator from running), then
        # power off through the FADT sleep control register.
        /bin/busybox sleep 3
        /bin/busybox poweroff -f

        """

    static func make() throws -> [UInt8] {
        var archive = CPIOWriter()
        for directory in ["bin", "proc", "sys", "dev"] { archive.add(directory, mode: 0o040755) }
        archive.add("bin/busybox", mode: 0o100755, data: try FileDescriptor.open(busybox, O_RDONLY).readToEnd())
        archive.add("init", mode: 0o100755, data: Array(initScript.utf8))
        return archive.finish()
    }
}

/// Writes the "newc" cpio format the kernel unpacks as an initramfs.
struct CPIOWriter {
    private(set) var bytes: [UInt8] = []
    private var inode: UInt32 = 1

    mutating func add(_ name: String, mode: UInt32, data: [UInt8] = []) {
        let nameBytes = Array(name.utf8) + [0]
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
        let fields: [UInt32] = [inode, mode, 0, 0, 1, 0, UInt32(data.count), 0, 0, 0, 0, UInt32(nameBytes.count), 0]
        inode += 1
        bytes += Array("070701".utf8)
        for field in fields {
            let hex = String(field, radix: 16, uppercase: true)
            bytes += Array((String(repeating: "0", count: 8 - hex.count) + hex).utf8)
        }
        bytes += nameBytes
        pad()
        bytes += data
        pad()
    }

    mutating func finish() -> [UInt8] {
        add("TRAILER!!!", mode: 0)
        while bytes.count % 512 != 0 { bytes.append(0) }
        return bytes
    }

    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }
}

enum QEMU {
    static let isInstalled = HostTool.isInstalled("qemu-system-x86_64") && HostTool.isInstalled("timeout")
}

@Suite(
    .enabled(
        if: CachedKernel.isPresent && QEMU.isInstalled && ProbeInitramfs.isAvailable,
        "needs the cached guest kernel (scripts/setup), qemu-system-x86_64 and busybox-static"))
struct QEMUBootTests {
    @Test(.timeLimit(.minutes(6)), arguments: [1, 4])
    func debianKernelBootsFromOurBootParamsAndACPITables(vcpus: Int) throws {
        try Self.bootInQEMU(kernelPath: CachedKernel.path, vcpus: vcpus)
    }

    /// rund's own kernel as the uncompressed ELF it boots by default: loaded segment by segment
    /// and entered at its 64-bit entry with a zero page rund made up (no bzImage header).
    @Test(
        .timeLimit(.minutes(6)),
        .enabled(if: CachedKernel.isPresent(CachedKernel.rundELFPath), "rund's kernel is not built (scripts/build-guest-kernel)"))
    func rundsUncompressedKernelBootsFromOurBootParams() throws {
        try Self.bootInQEMU(kernelPath: CachedKernel.rundELFPath, vcpus: 2)
    }

    static func bootInQEMU(kernelPath: String, vcpus: Int) throws {
        let kernel = try FileDescriptor.open(kernelPath, O_RDONLY).readToEnd()
        let initrd = try ProbeInitramfs.make()
        let memoryBytes = 256 << 20
        let regions = X86Layout.ramRegions(memoryBytes: memoryBytes)
        let memory = try GuestMemory.anonymous(regions)
        let rsdp = try ACPITables.install(into: memory, vcpuCount: vcpus, devices: ACPIDevice.virtioMMIOSlots(count: 2))
        // No PIT under a hardware-reduced FADT and no kvmclock under TCG: give the kernel its
        // loops-per-jiffy and TSC rate so it need not calibrate; a panic reboots by triple fault (-no-reboot exits).
        let commandLine =
            "console=ttyS0 earlyprintk=ttyS0 panic=-1 reboot=t lpj=1000000 tsc_early_khz=1000000 "
            + "8250.nr_uarts=1 i8042.noaux i8042.nomux i8042.nopnp cryptomgr.notests"
        let state = try LinuxBoot.load(
            kernel: kernel, initrd: initrd, commandLine: commandLine, memory: memory,
            ramRegions: regions, acpiRSDP: rsdp)
        // Everything from 1 MiB up to the kernel's end: a bzImage's code or an ELF's segments.
        let kernelBytes =
            ElfKernel.hasMagic(kernel)
            ? Int(try ElfKernel(kernel).requiredMemoryEnd - X86Layout.himemStart.rawValue) : try BzImage(kernel).protectedModeKernel.count
        let initrdAddress = UInt64(try memory.load(UInt32.self, at: X86Layout.zeroPageAddress + 0x218))

        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        // Low memory up to the ROM shadow at 0xf0000 (our ACPI tables must end below it).
        try scratch.write("low.bin", try memory.readBytes(at: 0, count: 0xf0000))
        try scratch.write("kernel.bin", try memory.readBytes(at: X86Layout.himemStart, count: kernelBytes))
        try scratch.write("initrd.bin", try memory.readBytes(at: GuestAddress(initrdAddress), count: initrd.count))
        try scratch.write("rom.bin", TrampolineROM.make(state))

        let argv = [
            "timeout", "300", "qemu-system-x86_64",
            "-M", "microvm,acpi=off,pic=off,pit=off,rtc=off,isa-serial=on,auto-kernel-cmdline=off",
            "-cpu", "max", "-smp", "\(vcpus)", "-m", "\(memoryBytes >> 20)M",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-bios", "\(scratch.path)/rom.bin",
            "-device", "loader,file=\(scratch.path)/low.bin,addr=0,force-raw=on",
            "-device", "loader,file=\(scratch.path)/kernel.bin,addr=0x100000,force-raw=on",
            "-device", "loader,file=\(scratch.path)/initrd.bin,addr=0x\(String(initrdAddress, radix: 16)),force-raw=on",
            "-serial", "file:\(scratch.path)/console.log",
            // Stands in for rund's ACPI sleep-control device: QEMU exits with (value << 1) | 1.
            "-device", "isa-debug-exit,iobase=0x\(String(X86Layout.acpiSleepControlPort, radix: 16)),iosize=1",
        ]
        let result = try Subprocess.run(argv)
        let console = String(decoding: (try? scratch.read("console.log")) ?? [], as: UTF8.self)
        let log = "qemu exit \(result.status): \(result.stderrText)\n\(console)"
        // Power off wrote SLP_TYP 5 | SLP_EN = 0x34 to the sleep control port.
        let poweroffValue: Int32 = 0x34
        #expect(X86Layout.isPowerOffRequest(UInt8(poweroffValue)))
        #expect(result.status == (poweroffValue << 1) | 1, "\(log)")

        for line in [
            "Kernel command line: \(commandLine)",
            "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
            "BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved",
            "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
            "ACPI: RSDP 0x00000000000E0000 000024 (v02 RUND  )",
            "ACPI: FACP 0x",
            "ACPI: DSDT 0x",
            "ACPI: APIC 0x",
            "IOAPIC[0]: apic_id 0",
            "ACPI: INT_SRC_OVR (bus 0 bus_irq 0 global_irq 2 dfl dfl)",
            vcpus == 1 ? "smp: Brought up 1 node, 1 CPU" : "smp: Brought up 1 node, \(vcpus) CPUs",
            "ACPI: PM: (supports S0 S5)",
            "ACPI: Using IOAPIC for interrupt routing",
            "pnp: PnP ACPI: found 1 devices",
            "00:00: ttyS0 at I/O 0x3f8",
            "Freeing initrd memory",
            "RUND-CPUS \(vcpus)",
            "RUND-ACPI LNRO0005:00",
            "RUND-ACPI LNRO0005:01",
            "RUND-ACPI PNP0501:00",
            "RUND-DONE",
            "reboot: Power down",
        ] {
            #expect(console.contains(line), "console lacks \"\(line)\"\n\(log)")
        }
        for complaint in ["ACPI Error", "ACPI BIOS Error", "ACPI Warning", "ACPI BIOS Warning", "[Firmware Bug]", "e820: BUG"] {
            #expect(!console.contains(complaint), "console has \"\(complaint)\"\n\(log)")
        }
    }
}
