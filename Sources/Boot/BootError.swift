import GuestMemory

/// Why a guest could not be prepared for boot, as one line in the loader's own terms (a CLI adds
/// which of its options to change).
public enum BootError: Error, Equatable, CustomStringConvertible, Sendable {
    case kernelTruncated(size: Int, expected: Int)
    case notBzImage(reason: String)
    case invalidELFKernel(reason: String)
    case unsupportedBootProtocol(version: UInt16)
    case kernelNot64Bit
    case kernelDoesNotFit(neededBytes: UInt64, memoryBytes: UInt64)
    case initrdDoesNotFit(initrdBytes: Int, memoryBytes: UInt64)
    case commandLineTooLong(length: Int, maximum: Int)
    case commandLineContainsNUL
    case memoryTooSmall(neededBytes: UInt64, memoryBytes: UInt64)
    case invalidVCPUCount(Int, maximum: Int)
    case tooManyDevices(Int, maximum: Int)
    case invalidDevice(String)
    case acpiTablesTooLarge(size: Int, maximum: Int)
    case guestMemory(GuestMemoryError)

    public var description: String {
        switch self {
        case let .kernelTruncated(size, expected):
            return "kernel image is truncated (\(size) bytes, expected at least \(expected)); re-download or rebuild the kernel"
        case let .notBzImage(reason):
            return "kernel is not a bzImage (\(reason)); pass a bzImage such as /boot/vmlinuz-*"
        case let .invalidELFKernel(reason):
            return "kernel is an ELF file rund cannot boot (\(reason)); pass an x86-64 vmlinux or a bzImage"
        case let .unsupportedBootProtocol(version):
            return "kernel boot protocol \(version >> 8).\(version & 0xff) is too old (need 2.12 or later); use a Linux 3.8+ kernel"
        case .kernelNot64Bit:
            return "kernel has no 64-bit entry point (XLF_KERNEL_64 not set); use an x86-64 kernel"
        case let .kernelDoesNotFit(needed, memory):
            return "kernel needs \(mebibytes(needed)) MiB of low memory but the guest has \(mebibytes(memory)) MiB"
        case let .initrdDoesNotFit(initrd, memory):
            return "initrd of \(mebibytes(UInt64(initrd))) MiB does not fit in \(mebibytes(memory)) MiB of guest memory"
        case let .commandLineTooLong(length, maximum):
            return "kernel command line is \(length) bytes, the limit is \(maximum)"
        case .commandLineContainsNUL:
            return "kernel command line contains a NUL byte"
        case let .memoryTooSmall(needed, memory):
            return "guest memory of \(mebibytes(memory)) MiB is too small, at least \(mebibytes(needed)) MiB is needed"
        case let .invalidVCPUCount(count, maximum):
            return "\(count) vCPUs requested, supported are 1 to \(maximum)"
        case let .tooManyDevices(count, maximum):
            return "\(count) virtio-mmio devices requested, at most \(maximum) are supported; attach fewer disks"
        case let .invalidDevice(reason):
            return "cannot describe device to the guest: \(reason)"
        case let .acpiTablesTooLarge(size, maximum):
            return "ACPI tables need \(size) bytes but only \(maximum) are reserved; attach fewer devices"
        case let .guestMemory(error):
            return "writing boot data failed: \(error)"
        }
    }
}

/// Rounds up so a shortfall of a few bytes never prints as "0 MiB".
func mebibytes(_ bytes: UInt64) -> UInt64 {
    (bytes >> 20) + (bytes & 0xf_ffff == 0 ? 0 : 1)
}
