import Boot
import FuzzSupport
import GuestMemory

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    BzImageTarget.run(FuzzInput(data, size))
    return 0
}

/// The kernel file as `rund vm boot` reads it, through `LinuxBoot.load`: an ELF vmlinux
/// (Sources/Boot/ElfKernel.swift: program headers, segment offsets, sizes and addresses, entry)
/// or a bzImage, whose setup header is parsed (BzImage.swift, SetupHeader.swift) and whose
/// values place the kernel, an initrd and the command line in guest memory (pref_address,
/// init_size, initrd_addr_max, cmdline_size, setup_sects). The input is the kernel file itself.
@main
enum BzImageTarget {
    /// 128 MiB of guest RAM at 0 (the Debian kernel asks for 16 MiB + 52 MiB), made once; only
    /// the pages an input touches cost anything.
    static let memory = try! GuestMemory.anonymous([(base: 0, size: ramBytes)])
    static let ramBytes = 128 << 20
    static let initrd = [UInt8](repeating: 0x5a, count: 4096)

    static func main() {
        runFuzzer(LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        _ = try? LinuxBoot.load(
            kernel: input.bytes, initrd: initrd, commandLine: KernelCommandLine.defaultArguments, memory: memory,
            ramRegions: [(base: 0, size: ramBytes)], acpiRSDP: X86Layout.rsdpAddress)
    }
}
