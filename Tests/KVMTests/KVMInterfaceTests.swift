import CLinux
import HostOS
import Testing
@testable import KVM

/// The ioctl numbers and struct layouts are the kernel ABI: check them against the values the
/// kernel documents, so a header or import mistake fails here and not inside a guest.
@Suite struct KVMInterfaceTests {
    @Test func ioctlNumbersMatchTheKernelABI() {
        #expect(rund_KVM_GET_API_VERSION() == 0xAE00)
        #expect(rund_KVM_CREATE_VM() == 0xAE01)
        #expect(rund_KVM_CREATE_VCPU() == 0xAE41)
        #expect(rund_KVM_RUN() == 0xAE80)
        #expect(rund_KVM_SET_USER_MEMORY_REGION() == 0x4020AE46)
        #expect(rund_KVM_GET_REGS() == 0x8090AE81)
        #expect(rund_KVM_SET_SREGS() == 0x4138AE84)
        #expect(rund_KVM_SET_TSS_ADDR() == 0xAE47)
        #expect(rund_FICLONE() == 0x40049409)
    }

    @Test func structLayoutsMatchTheKernelABI() {
        #expect(MemoryLayout<kvm_regs>.size == 144)
        #expect(MemoryLayout<kvm_sregs>.size == 312)
        #expect(MemoryLayout<kvm_userspace_memory_region>.size == 32)
        #expect(MemoryLayout<kvm_cpuid_entry2>.size == 40)
        #expect(MemoryLayout<kvm_segment>.size == 24)
    }

    @Test func missingDeviceIsAOneLineError() {
        #expect {
            _ = try KVMSystem(path: "/nonexistent/kvm")
        } throws: { error in
            (error as? SystemError)?.description == "open /nonexistent/kvm: No such file or directory"
        }
    }

    @Test(.enabled(if: HostKVM.isUsable, HostKVM.reason))
    func reportsAPIVersionAndCapabilities() throws {
        let kvm = try KVMSystem()
        #expect(try kvm.apiVersion() == 12)
        #expect(try kvm.checkExtension(KVM_CAP_USER_MEMORY) > 0)
        #expect(try kvm.checkExtension(KVM_CAP_IRQCHIP) > 0)
        #expect(try kvm.vcpuMmapSize() >= 4096)
        let cpuid = try kvm.supportedCPUID()
        #expect(cpuid.contains { $0.function == 0 })
        #expect(cpuid.contains { $0.function == 1 })
    }
}

/// Whether this host's /dev/kvm can be opened; tests that need it are disabled with this reason.
enum HostKVM {
    static let isUsable: Bool = (try? KVMSystem()) != nil
    static let reason: Comment = "/dev/kvm is missing or not accessible on this host"
}
