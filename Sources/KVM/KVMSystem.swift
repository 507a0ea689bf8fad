#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS

/// The host's KVM device (`/dev/kvm`): capability queries and VM creation.
public final class KVMSystem: Sendable {
    public static let expectedAPIVersion: Int32 = 12

    let device: FileDescriptor
    public let path: String

    public init(path: String = "/dev/kvm") throws {
        self.path = path
        device = try FileDescriptor.open(path, O_RDWR)
        let version = try apiVersion()
        guard version == Self.expectedAPIVersion else {
            throw SystemError(
                "KVM_GET_API_VERSION", errno: EINVAL, subject: "\(path) reports API \(version), rund needs \(Self.expectedAPIVersion)")
        }
    }

    public func apiVersion() throws -> Int32 {
        try device.ioctl("KVM_GET_API_VERSION", rund_KVM_GET_API_VERSION(), value: 0)
    }

    /// KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific value.
    public func checkExtension(_ capability: Int32) throws -> Int32 {
        try device.ioctl("KVM_CHECK_EXTENSION", rund_KVM_CHECK_EXTENSION(), value: UInt(capability))
    }

    public func vcpuMmapSize() throws -> Int {
        Int(try device.ioctl("KVM_GET_VCPU_MMAP_SIZE", rund_KVM_GET_VCPU_MMAP_SIZE(), value: 0))
    }

    /// The CPUID leaves this host's KVM can expose to a guest.
    public func supportedCPUID() throws -> [kvm_cpuid_entry2] {
        var capacity: UInt32 = 128
        while true {
            let buffer = CPUIDBuffer(capacity: capacity)
            do {
                try device.ioctl("KVM_GET_SUPPORTED_CPUID", rund_KVM_GET_SUPPORTED_CPUID(), buffer.raw)
                return buffer.entries
            } catch let error as SystemError where error.errno == E2BIG && capacity < 4096 {
                capacity *= 2
            }
        }
    }

    /// The MSR indices KVM saves and restores for a vCPU.
    public func msrIndexList() throws -> [UInt32] {
        var capacity: UInt32 = 256
        while true {
            let raw = UnsafeMutableRawPointer.allocate(byteCount: 4 + Int(capacity) * 4, alignment: 4)
            defer { raw.deallocate() }
            raw.storeBytes(of: capacity, as: UInt32.self)
            do {
                try device.ioctl("KVM_GET_MSR_INDEX_LIST", rund_KVM_GET_MSR_INDEX_LIST(), raw)
                let count = Int(raw.load(as: UInt32.self))
                return (0..<count).map { raw.load(fromByteOffset: 4 + $0 * 4, as: UInt32.self) }
            } catch let error as SystemError where error.errno == E2BIG && capacity < 8192 {
                capacity *= 2
            }
        }
    }

    /// Bytes of a vCPU's XSAVE area on this host: KVM_CAP_XSAVE2's answer (at least 4096, the
    /// legacy KVM_GET_XSAVE size, where the capability is missing).
    public func xsaveSize() -> Int {
        let size = (try? checkExtension(Int32(KVM_CAP_XSAVE2))) ?? 0
        return max(Int(size), MemoryLayout<kvm_xsave>.size)
    }

    public func createVirtualMachine() throws -> VirtualMachine {
        let fd = try device.ioctl("KVM_CREATE_VM", rund_KVM_CREATE_VM(), value: 0)
        return try VirtualMachine(system: self, fd: FileDescriptor(adopting: fd))
    }
}

/// A heap buffer shaped as `struct kvm_cpuid2` with room for `capacity` entries.
final class CPUIDBuffer {
    let raw: UnsafeMutableRawPointer
    let capacity: UInt32

    init(capacity: UInt32) {
        self.capacity = capacity
        let size = rund_kvm_cpuid2_size(capacity)
        raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        raw.assumingMemoryBound(to: kvm_cpuid2.self).pointee.nent = capacity
    }

    convenience init(entries: [kvm_cpuid_entry2]) {
        self.init(capacity: UInt32(entries.count))
        let first = (raw + MemoryLayout<kvm_cpuid2>.size).assumingMemoryBound(to: kvm_cpuid_entry2.self)
        for (i, entry) in entries.enumerated() { first[i] = entry }
    }

    deinit { raw.deallocate() }

    var entries: [kvm_cpuid_entry2] {
        let count = Int(raw.assumingMemoryBound(to: kvm_cpuid2.self).pointee.nent)
        let first = (raw + MemoryLayout<kvm_cpuid2>.size).assumingMemoryBound(to: kvm_cpuid_entry2.self)
        return Array(UnsafeBufferPointer(start: first, count: count))
    }
}
