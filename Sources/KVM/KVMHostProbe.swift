#if canImport(Glibc)
import Glibc
#endif

/// What kind of KVM this host offers, and so which guests it can run.
public enum KVMFlavor: Sendable, Equatable {
    /// Hardware virtualization (kvm_intel / kvm_amd): boots stock kernels.
    case hardware(module: String)
    /// Pagetable-based virtualization (kvm_pvm): runs PVM-aware and freestanding guests only;
    /// a stock Linux kernel hangs early in boot.
    case pvm
    /// /dev/kvm works but no known vendor module is loaded (e.g. inside an unusual hypervisor).
    case unknown
}

public enum KVMHostProbe {
    /// Loaded KVM vendor module, read from /sys/module (no lsmod needed).
    public static func flavor(sysModule: String = "/sys/module") -> KVMFlavor {
        if access("\(sysModule)/kvm_pvm", F_OK) == 0 { return .pvm }
        for module in ["kvm_intel", "kvm_amd"] where access("\(sysModule)/\(module)", F_OK) == 0 {
            return .hardware(module: module)
        }
        return .unknown
    }

    /// Opens /dev/kvm and creates (then drops) a VM: the check that actually matters.
    public static func canCreateVM(path: String = "/dev/kvm") -> Result<Void, Error> {
        Result {
            let kvm = try KVMSystem(path: path)
            _ = try kvm.createVirtualMachine()
        }
    }
}
