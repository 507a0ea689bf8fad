import Devices
import HostOS
import KVM

extension Machine {
    /// Saves a paused machine: device state first, then every vCPU's and the VM's, then guest
    /// memory into `memoryFile` (regions back to back, zero pages left as holes). Taken on the
    /// calling thread, which is not a vCPU thread: the vCPU threads' seccomp filters allow no
    /// state ioctl but the few the stall watchdog reads, and need none.
    public func snapshot(writingMemoryTo memoryFile: FileDescriptor) throws -> MachineSnapshot {
        guard isFullyPaused else { throw MachineSnapshotError.failed("cannot snapshot the machine: pause it first") }
        guard pmemDevices.isEmpty, network == nil else {
            throw MachineSnapshotError.failed("cannot snapshot a machine with pmem or network devices: their state is not saved yet")
        }
        let serialState = serial.saveState()
        let virtio = transports.map { transport -> MachineSnapshot.SavedVirtioDevice in
            let kind: MachineSnapshot.SavedVirtioDevice.Kind
            if let disk = transport.device as? VirtioBlock {
                kind = .block(readOnly: disk.readOnly, capacity: disk.capacity)
            } else if let vsock = transport.device as? VirtioVsock {
                kind = .vsock(guestCID: vsock.guestCID, hadConnections: vsock.hasConnections)
            } else if let balloon = transport.device as? VirtioBalloon {
                let pages = balloon.savedPages
                kind = .balloon(target: pages.target, actual: pages.actual)
            } else {
                preconditionFailure("a machine that can be saved has only disks, vsock and a balloon")
            }
            return .init(kind: kind, transport: transport.saveState())
        }
        let kvm = vm.system
        let msrIndices = SnapshotMSRs.indices(from: try kvm.msrIndexList())
        let xsaveSize = kvm.xsaveSize()
        let vcpuStates = try vcpus.map { try $0.saveState(msrIndices: msrIndices, xsaveSize: xsaveSize) }
        let vmState = try vm.saveState()
        try memory.save(toFile: memoryFile)
        logger.debug("machine saved", metadata: ["msrs": "\(vcpuStates.first?.msrs.count ?? 0)", "xsave": "\(xsaveSize)"])
        return MachineSnapshot(
            memoryMiB: configuration.memoryMiB,
            regions: memory.regions.map { .init(base: $0.guestBase, size: $0.size) },
            supportedCPUID: try kvm.supportedCPUID(), xsaveSize: xsaveSize, vcpus: vcpuStates, vm: vmState,
            serial: serialState, virtio: virtio)
    }
}
