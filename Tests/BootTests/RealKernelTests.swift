#if canImport(Glibc)
import Glibc
#endif
import GuestMemory
import HostOS
import Testing
@testable import Boot

/// The guest kernel `scripts/setup` caches under the state root (Debian's cloud kernel).
enum CachedKernel {
    static let path: String = {
        let root = getenv("RUND_ROOT").map { String(cString: $0) } ?? "/var/lib/rund"
        return "\(root)/kernel/current/vmlinuz"
    }()

    /// rund's own kernel, uncompressed (scripts/build-guest-kernel).
    static let rundELFPath: String = {
        let root = getenv("RUND_ROOT").map { String(cString: $0) } ?? "/var/lib/rund"
        return "\(root)/kernel/guest/vmlinux"
    }()

    static var isPresent: Bool { isPresent(path) }
    static func isPresent(_ path: String) -> Bool { access(path, R_OK) == 0 }
}

@Suite(.enabled(if: CachedKernel.isPresent, "no cached guest kernel at $RUND_ROOT/kernel/current/vmlinuz; run scripts/setup"))
struct RealKernelTests {
    @Test func loadsTheCachedDebianKernel() throws {
        let kernel = try FileDescriptor.open(CachedKernel.path, O_RDONLY).readToEnd()
        let image = try BzImage(kernel)
        #expect(image.protocolVersion >= 0x020c)
        #expect(image.xloadFlags & 1 != 0)
        #expect(image.isRelocatable)
        #expect(image.commandLineMax >= 2047)

        let regions = X86Layout.ramRegions(memoryBytes: 256 << 20)
        let memory = try GuestMemory.anonymous(regions)
        let rsdp = try ACPITables.install(into: memory, vcpuCount: 2, devices: ACPIDevice.virtioMMIOSlots(count: 1))
        let state = try LinuxBoot.load(
            kernel: kernel, initrd: [UInt8](repeating: 7, count: 1 << 20),
            commandLine: try KernelCommandLine.build(), memory: memory,
            ramRegions: regions, acpiRSDP: rsdp)
        #expect(state.rip == 0x10_0200)
        let offset = image.protectedModeOffset
        #expect(try memory.readBytes(at: 0x10_0000, count: 4096) == Array(kernel[offset..<(offset + 4096)]))
        #expect(try memory.load(UInt16.self, at: X86Layout.zeroPageAddress + 0x206) == image.protocolVersion)
        #expect(try memory.load(UInt64.self, at: X86Layout.zeroPageAddress + 0x070) == 0xe0000)

        // The kernel's init_size decides the smallest guest: 64 MiB is too little for Debian's.
        let small = X86Layout.ramRegions(memoryBytes: 64 << 20)
        let needed = max(0x10_0000, image.preferredAddress) + UInt64(image.initSize)
        #expect(throws: BootError.kernelDoesNotFit(neededBytes: needed, memoryBytes: 64 << 20)) {
            try LinuxBoot.load(
                kernel: kernel, initrd: nil, commandLine: "", memory: try GuestMemory.anonymous(small),
                ramRegions: small, acpiRSDP: nil)
        }
    }
}
