#if canImport(Glibc)
import Glibc
#endif
import Boot
import CLinux
import Devices
import GuestMemory
import HostOS
import KVM

// The stages `Machine.init` builds a VM in (Firecracker's builder is the model): each is a
// function of what the earlier ones made, and a restore from a snapshot reuses all of them but
// the guest itself (`loadGuest` and `makeVCPUs` for a boot, `restoreGuest` for a restore).

/// What the machine reads or writes on the host, opened before any KVM object exists: a bad
/// path fails the build with nothing made.
struct HostFiles {
    let kernel: [UInt8]
    /// The file `kernel` was read from: an ELF kernel's pages are mapped from it (`LinuxBoot.load`).
    let kernelFile: FileDescriptor?
    let initrd: [UInt8]?
    let console: FileDescriptor?
    /// nil for a drive with no medium.
    let disks: [FileDescriptor?]
    /// Each pmem image with its length (a whole number of pages).
    let pmemImages: [(file: FileDescriptor, length: Int)]

    /// `readsGuestImage`: false when restoring a snapshot, whose guest is in its memory.
    init(_ configuration: VMConfiguration, readsGuestImage: Bool) throws {
        (kernel, kernelFile) =
            readsGuestImage ? try Self.read(configuration.kernelPath, kind: "kernel", limit: 128 << 20) : ([], nil)
        initrd =
            readsGuestImage
            ? try configuration.initrdPath.map { try Self.read($0, kind: "initrd", limit: configuration.memoryMiB << 20).bytes } : nil
        switch configuration.console {
        case .standardOutput: console = try FileDescriptor.duplicate(1)
        case .file(let path): console = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND)
        case .none: console = nil
        }
        disks = try configuration.disks.map { disk in
            guard let path = disk.path else { return nil }
            do {
                return try FileDescriptor.open(path, disk.readOnly ? O_RDONLY : O_RDWR)
            } catch let error as SystemError {
                throw VMError.unreadableFile(kind: "disk", path: path, reason: error.message)
            }
        }
        pmemImages = try configuration.pmemImages.map(Self.openPmemImage)
    }

    /// A pmem image: read-only, not empty, whole pages, at most 64 GiB (a guest's memory map of
    /// it costs 1/64 of its size in the guest's RAM).
    static func openPmemImage(_ path: String) throws -> (file: FileDescriptor, length: Int) {
        let file: FileDescriptor
        let size: Int64
        do {
            file = try FileDescriptor.open(path, O_RDONLY)
            size = try file.size()
        } catch let error as SystemError {
            throw VMError.unreadableFile(kind: "pmem image", path: path, reason: error.message)
        }
        let page = Int64(sysconf(Int32(_SC_PAGESIZE)))
        guard size > 0 else { throw VMError.badPmemImage(path: path, reason: "it is empty") }
        guard size % page == 0 else {
            throw VMError.badPmemImage(path: path, reason: "its \(size) bytes are not a whole number of \(page)-byte pages")
        }
        guard size <= 64 << 30 else { throw VMError.badPmemImage(path: path, reason: "it is larger than 64 GiB") }
        return (file, Int(size))
    }

    static func read(_ path: String, kind: String, limit: Int) throws -> (bytes: [UInt8], file: FileDescriptor) {
        do {
            let fd = try FileDescriptor.open(path, O_RDONLY)
            let size = try fd.size()
            guard size <= Int64(limit) else {
                throw VMError.fileTooLarge(kind: kind, path: path, mebibytes: Int(size >> 20), limit: limit >> 20)
            }
            return (try fd.readToEnd(limit: limit + 1), fd)
        } catch let error as SystemError {
            throw VMError.unreadableFile(kind: kind, path: path, reason: error.message)
        }
    }
}

/// Virtio devices get consecutive slots in the MMIO gap, each with its transport, its irqfd
/// interrupt line and its ACPI description: wired here once for every kind of device.
struct VirtioSlotWiring {
    let vm: VirtualMachine
    let memory: GuestMemory
    private(set) var ranges: [IOBus.MMIORange] = []
    private(set) var acpiDevices: [ACPIDevice] = []
    private(set) var transports: [VirtioMMIOTransport] = []

    init(vm: VirtualMachine, memory: GuestMemory) {
        self.vm = vm
        self.memory = memory
    }

    /// Puts `device` in the next free slot; returns its transport.
    @discardableResult
    mutating func attach(_ device: any VirtioDevice) throws -> VirtioMMIOTransport {
        guard let slot = VirtioSlots.slot(transports.count) else {
            throw VMError.setup("virtio-mmio slot \(transports.count) lies outside the guest address space")
        }
        let transport = VirtioMMIOTransport(device: device, memory: memory, interrupt: try IRQFDLine(vm: vm, gsi: slot.gsi))
        ranges.append(IOBus.MMIORange(base: slot.base, size: slot.size, device: transport))
        acpiDevices.append(.virtioMMIO(base: slot.base, size: UInt32(slot.size), gsi: slot.gsi))
        transports.append(transport)
        return transport
    }
}

extension Machine {
    /// The virtio-net device over the caller's tap, its I/O thread, and the ioeventfds through
    /// which KVM wakes that thread when the guest notifies a queue (no exit to a vCPU thread).
    static func attachNetwork(
        _ interface: VMConfiguration.NetworkInterface, to virtio: inout VirtioSlotWiring, vm: VirtualMachine, state: MachineState,
        confine: Bool
    ) throws -> (VirtioNet, VirtioNetWorker) {
        let device: VirtioNet
        do {
            device = try VirtioNet(backend: interface.tap, mac: interface.mac, mtu: interface.mtu, offloads: interface.offloads)
        } catch {
            throw VMError.setup("network interface: \(error)")
        }
        let transport = try virtio.attach(device)
        guard let slot = virtio.ranges.last else { throw VMError.setup("the network device got no virtio-mmio slot") }
        let confineWorker: @Sendable () -> Void = {
            do {
                try NetworkWorkerConfinement.filter.applyToCurrentThread { violation in
                    state.finish(.confinementBroken("\(violation)"))
                }
            } catch {
                state.finish(.crashed("cannot confine the virtio-net thread: \(error)"))
            }
        }
        let confinement: (@Sendable () -> Void)? = confine ? confineWorker : nil
        let worker = try VirtioNetWorker(device: device, transport: transport, confine: confinement)
        let notify = slot.base.rawValue + VirtioMMIOTransport.queueNotifyOffset
        try vm.registerIOEventFD(worker.receiveKick, mmioAddress: notify, length: 4, datamatch: UInt64(VirtioNet.receiveQueue))
        try vm.registerIOEventFD(worker.transmitKick, mmioAddress: notify, length: 4, datamatch: UInt64(VirtioNet.transmitQueue))
        return (device, worker)
    }

    /// The VM with rund's fixed platform: TSS, in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT.
    static func makeVirtualMachine(_ kvm: KVMSystem) throws -> VirtualMachine {
        let vm = try kvm.createVirtualMachine()
        try vm.setTSSAddress(X86Layout.tssAddress.rawValue)
        try vm.createIRQChip()
        try vm.createPIT2()
        return vm
    }

    /// One KVM memory slot per region of guest RAM: the only place a host address of guest
    /// memory leaves `GuestMemory`.
    static func registerMemory(_ memory: GuestMemory, in vm: VirtualMachine) throws {
        for (slot, mapping) in memory.hypervisorMappings.enumerated() {
            try vm.setUserMemoryRegion(slot: UInt32(slot), guestAddress: mapping.guestBase.rawValue, size: mapping.size, host: mapping.host)
        }
    }

    /// The pmem images' ranges, mapped and registered as read-only KVM memory slots after the
    /// RAM slots. A guest write there exits to the VMM as MMIO, which `ReadOnlyWindow` drops.
    static func mapPmem(
        _ images: [(file: FileDescriptor, length: Int)], in vm: VirtualMachine, firstSlot: Int, supportedCPUID: [kvm_cpuid_entry2]
    ) throws -> [GuestRegion] {
        guard !images.isEmpty else { return [] }
        guard let ranges = X86Layout.pmemRanges(fileSizes: images.map { UInt64($0.length) }), let last = ranges.last else {
            throw VMError.setup("the pmem images do not fit in the guest's address space")
        }
        // The guest must be able to address the ranges: CPUID 0x80000008 EAX[7:0] physical bits.
        let physicalBits = supportedCPUID.first { $0.function == 0x8000_0008 }.map { Int($0.eax & 0xff) } ?? 36
        let end = last.base.rawValue + last.size
        guard physicalBits >= 64 || end <= UInt64(1) << physicalBits else {
            throw VMError.setup(
                "pmem ranges end at \(end >> 30) GiB, past the \(physicalBits)-bit physical addresses this CPU gives guests")
        }
        return try zip(images, ranges).enumerated().map { index, pair in
            let (image, range) = pair
            let region = try GuestRegion(readOnlyFile: image.file, fileLength: image.length, at: range.base, size: Int(range.size))
            let mapping = region.hypervisorMapping
            try vm.setUserMemoryRegion(
                slot: UInt32(firstSlot + index), guestAddress: mapping.guestBase.rawValue, size: mapping.size, host: mapping.host,
                readOnly: true)
            return region
        }
    }

    /// Writes ACPI tables and the guest image (a Linux kernel with its initrd and command line,
    /// or a flat test binary) into memory; returns the boot vCPU's entry state.
    static func loadGuest(
        _ configuration: VMConfiguration, files: HostFiles, memory: GuestMemory,
        ramRegions: [(base: GuestAddress, size: Int)], acpiDevices: [ACPIDevice]
    ) throws -> BootCPUState {
        let rsdp = try ACPITables.install(into: memory, vcpuCount: configuration.vcpuCount, devices: acpiDevices)
        switch configuration.kernelFormat {
        case .linux:
            let commandLine = try KernelCommandLine.build(extra: configuration.extraCommandLine)
            return try LinuxBoot.load(
                kernel: files.kernel, initrd: files.initrd, commandLine: commandLine, memory: memory,
                ramRegions: ramRegions, acpiRSDP: rsdp, kernelFile: files.kernelFile)
        case .flatBinary(let loadAddress):
            try memory.write(files.kernel, at: loadAddress)
            return try LinuxBoot.prepareLongModeEntry(at: loadAddress, memory: memory)
        }
    }

    /// The vCPUs, each with its CPUID (its own APIC id and topology), boot MSRs and FPU state;
    /// the first one gets the entry registers.
    static func makeVCPUs(_ count: Int, in vm: VirtualMachine, supported: [kvm_cpuid_entry2], boot: BootCPUState) throws -> [VCPU] {
        let supported = supported.map(CPUIDEntry.init)
        return try (0..<count).map { index in
            let vcpu = try vm.createVCPU(id: UInt32(index))
            let cpuid = CPUIDNormalizer.normalize(supported, vcpuIndex: index, vcpuCount: count)
            try vcpu.setCPUID(cpuid.map(kvm_cpuid_entry2.init))
            try vcpu.setMSRs(BootMSRs.entries)
            try vcpu.setFPU(.bootState)
            if index == 0 {
                try vcpu.setSpecialRegisters(try vcpu.specialRegisters().applying(boot))
                try vcpu.setRegisters(kvm_regs(boot))
            }
            return vcpu
        }
    }
}

extension Machine.GuestSource {
    var isBoot: Bool {
        if case .boot = self { return true }
        return false
    }
}

extension Machine {
    /// The restore stage, in place of the guest-image load and the boot vCPUs: device registers
    /// first (they raise nothing yet, and a device refusing its state leaves no vCPU made), then
    /// each vCPU's state, then the VM's irqchip, PIT and clock, and only then what the devices
    /// owe the guest (an interrupt it had not taken, a disk that got its medium, the vsock
    /// transport reset), since an interrupt injected before the irqchip is restored is lost.
    static func restoreGuest(
        _ snapshot: MachineSnapshot, vm: VirtualMachine, serial: Serial8250,
        transports: [VirtioMMIOTransport], disks: [VirtioBlock]
    ) throws -> [VCPU] {
        serial.restoreState(snapshot.serial)
        for (index, (transport, saved)) in zip(transports, snapshot.virtio).enumerated() {
            do throws(VirtioRestoreError) {
                try transport.restoreState(saved.transport)
            } catch {
                throw MachineSnapshotError.mismatch("virtio device \(index) \(error)")
            }
            if case let .balloon(target, actual) = saved.kind, let balloon = transport.device as? VirtioBalloon {
                do throws(VirtioDeviceError) {
                    try balloon.restorePages(target: target, actual: actual)
                } catch {
                    throw MachineSnapshotError.mismatch("virtio device \(index): \(error)")
                }
            }
        }
        let vcpus = try snapshot.vcpus.enumerated().map { index, state in
            let vcpu = try vm.createVCPU(id: UInt32(index))
            try vcpu.restoreState(state)
            return vcpu
        }
        try vm.restoreState(snapshot.vm)
        for (disk, (transport, saved)) in zip(disks, zip(transports, snapshot.virtio)) {
            if case .block(_, let capacity) = saved.kind, disk.capacity != capacity { transport.configurationChanged() }
        }
        for (transport, saved) in zip(transports, snapshot.virtio) {
            var deviceEvents = true
            if case .vsock(_, let hadConnections) = saved.kind { deviceEvents = hadConnections }
            transport.resumeAfterRestore(sendingDeviceEvents: deviceEvents)
        }
        serial.resumeAfterRestore()
        for vcpu in vcpus { vcpu.notifyClockPaused() }
        return vcpus
    }
}
