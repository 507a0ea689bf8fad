#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS

/// One KVM virtual machine: memory slots, the in-kernel irqchip and vCPU creation.
public final class VirtualMachine: Sendable {
    public let system: KVMSystem
    let fd: FileDescriptor
    let vcpuMmapSize: Int

    init(system: KVMSystem, fd: FileDescriptor) throws {
        self.system = system
        self.fd = fd
        vcpuMmapSize = try system.vcpuMmapSize()
    }

    /// Closes the VM's descriptor: once its vCPUs are closed too, the kernel destroys the VM
    /// (and its worker threads, which KVM puts in the creator's cgroup).
    public func close() {
        fd.close()
    }

    /// Maps `size` bytes at `host` into guest physical memory at `guestAddress`.
    public func setUserMemoryRegion(
        slot: UInt32, guestAddress: UInt64, size: Int, host: UnsafeMutableRawPointer, readOnly: Bool = false
    ) throws {
        var region = kvm_userspace_memory_region(
            slot: slot,
            flags: readOnly ? UInt32(KVM_MEM_READONLY) : 0,
            guest_phys_addr: guestAddress,
            memory_size: UInt64(size),
            userspace_addr: UInt64(UInt(bitPattern: host)))
        try fd.ioctl("KVM_SET_USER_MEMORY_REGION", rund_KVM_SET_USER_MEMORY_REGION(), &region)
    }

    /// Must come before any vCPU is created (x86).
    public func createIRQChip() throws {
        try fd.ioctl("KVM_CREATE_IRQCHIP", rund_KVM_CREATE_IRQCHIP(), value: 0)
    }

    /// The in-kernel i8254 PIT; the speaker port is a dummy so guests probing it cause no exits.
    public func createPIT2() throws {
        var config = kvm_pit_config()
        config.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
        try fd.ioctl("KVM_CREATE_PIT2", rund_KVM_CREATE_PIT2(), &config)
    }

    /// Three pages Intel VMX needs below 4 GiB; harmless elsewhere.
    public func setTSSAddress(_ address: UInt64) throws {
        try fd.ioctl("KVM_SET_TSS_ADDR", rund_KVM_SET_TSS_ADDR(), value: UInt(address))
    }

    /// Sets a GSI's level on the in-kernel irqchip.
    public func setIRQLine(gsi: UInt32, level: Bool) throws {
        var line = kvm_irq_level()
        line.irq = gsi
        line.level = level ? 1 : 0
        try fd.ioctl("KVM_IRQ_LINE", rund_KVM_IRQ_LINE(), &line)
    }

    /// Binds an eventfd to a GSI: a write to the eventfd injects the interrupt without an exit.
    public func registerIRQFD(_ eventFD: EventFD, gsi: UInt32) throws {
        var request = kvm_irqfd()
        request.fd = UInt32(eventFD.descriptor.rawValue)
        request.gsi = gsi
        try fd.ioctl("KVM_IRQFD", rund_KVM_IRQFD(), &request)
    }

    public func unregisterIRQFD(_ eventFD: EventFD, gsi: UInt32) throws {
        var request = kvm_irqfd()
        request.fd = UInt32(eventFD.descriptor.rawValue)
        request.gsi = gsi
        request.flags = UInt32(KVM_IRQFD_FLAG_DEASSIGN)
        try fd.ioctl("KVM_IRQFD", rund_KVM_IRQFD(), &request)
    }

    /// Signals `eventFD` when the guest writes `datamatch` (if given) to the MMIO address,
    /// instead of exiting to userspace.
    public func registerIOEventFD(_ eventFD: EventFD, mmioAddress: UInt64, length: UInt32, datamatch: UInt64?) throws {
        var request = kvm_ioeventfd()
        request.addr = mmioAddress
        request.len = length
        request.fd = eventFD.descriptor.rawValue
        if let datamatch {
            request.datamatch = datamatch
            request.flags = UInt32(1 << kvm_ioeventfd_flag_nr_datamatch)
        }
        try fd.ioctl("KVM_IOEVENTFD", rund_KVM_IOEVENTFD(), &request)
    }

    public func createVCPU(id: UInt32) throws -> VCPU {
        let vcpuFD = FileDescriptor(adopting: try fd.ioctl("KVM_CREATE_VCPU", rund_KVM_CREATE_VCPU(), value: UInt(id)))
        return try VCPU(id: id, fd: vcpuFD, mmapSize: vcpuMmapSize)
    }
}
