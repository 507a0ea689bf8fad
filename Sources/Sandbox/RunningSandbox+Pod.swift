#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS
import Storage

/// Where a pod's later containers' drives are: `slots` pairs (image, writable layer) from drive
/// `firstDrive` of the VM, empty at boot (`SandboxSpec.containerSlots`).
struct PodDrives: Sendable {
    let firstDrive: Int
    let slots: Int

    func imageDrive(slot: Int) -> Int { firstDrive + 2 * slot }
    func writableDrive(slot: Int) -> Int { firstDrive + 2 * slot + 1 }

    /// The guest's name for a drive: virtio-blk disks are vda, vdb, ... in the VM's order.
    static func guestPath(drive: Int) -> String {
        "/dev/vd" + String(UnicodeScalar(UInt8(ascii: "a") + UInt8(drive)))
    }
}

/// A pod's later container: what `RunningSandbox.addContainer` puts in the running VM.
public struct PodContainerSpec: Sendable {
    /// The container's id in the guest ([A-Za-z0-9_.-], 1 to 64 characters).
    public var id: String
    public var root: SandboxRoot
    /// The main process exactly as it runs (the shim's config.json).
    public var process: AgentProcessSpec
    public var writableSizeMiB: Int
    /// The container's memory limit inside the guest (its own cgroup); 0: only the VM's size.
    public var memoryLimitBytes: UInt64

    public init(id: String, root: SandboxRoot, process: AgentProcessSpec, writableSizeMiB: Int, memoryLimitBytes: UInt64 = 0) {
        self.id = id
        self.root = root
        self.process = process
        self.writableSizeMiB = writableSizeMiB
        self.memoryLimitBytes = memoryLimitBytes
    }
}

extension RunningSandbox {
    /// How many containers the VM was made to take beside its first.
    public var containerSlots: Int { pod.slots }

    /// How many more containers the VM can take (free container slots).
    public var freeContainerSlots: Int { podSlots.withLock { $0.filter { $0 == nil }.count } }

    /// Puts another container in the running VM: its image and a fresh writable layer go into a
    /// free slot's empty drives, and the agent mounts them as the container's rootfs. Its
    /// processes share the UTS and IPC namespaces of the first container (which must be
    /// running) and run in a guest cgroup of their own. Nothing is left taken if this throws.
    public func addContainer(_ spec: PodContainerSpec) async throws -> SandboxContainer {
        let claimed = podSlots.withLock { slots -> Int? in
            guard !slots.contains(spec.id), let free = slots.firstIndex(of: nil) else { return nil }
            slots[free] = spec.id
            return free
        }
        guard let slot = claimed else {
            if podSlots.withLock({ $0.contains(spec.id) }) { throw SandboxError("container \(spec.id) is already in the sandbox") }
            throw SandboxError("the sandbox has no room for another container (it was made with \(pod.slots) container slots)")
        }
        var inserted = false
        var keepOpen: FileDescriptor?
        do {
            let root = try Sandbox.openRoot(spec.root, stateRoot: stateRoot, logger: logger)
            keepOpen = root.keepOpen
            let image = try FileDescriptor.open(root.disk, O_RDONLY | O_CLOEXEC)
            let writable = try WritableLayers(root: stateRoot, logger: logger).make(sizeMiB: spec.writableSizeMiB)
            inserted = true
            try machine.insertMedium(drive: pod.imageDrive(slot: slot), image)
            try machine.insertMedium(drive: pod.writableDrive(slot: slot), writable)
            _ = try await client.createContainer(
                .with {
                    $0.containerID = spec.id
                    $0.rootfs = .with {
                        $0.image = .with {
                            $0.path = PodDrives.guestPath(drive: pod.imageDrive(slot: slot))
                            $0.fsType = "erofs"
                        }
                        $0.writable = .with {
                            $0.path = PodDrives.guestPath(drive: pod.writableDrive(slot: slot))
                            $0.fsType = "ext4"
                        }
                        $0.upperDir = "upper"
                        $0.workDir = "work"
                    }
                    // No network: the guest has the first container's, applied once per guest.
                    $0.shareNamespacesWith = id
                    $0.ownCgroup = true
                    $0.memoryLimitBytes = spec.memoryLimitBytes
                }, timeout: main.controlTimeout)
        } catch {
            if inserted { ejectDrives(slot: slot) }
            keepOpen?.close()
            podSlots.withLock { $0[slot] = nil }
            if let stop = control.stopped { throw SandboxStoppedError(stop: stop) }
            throw await explain(error)
        }
        logger.info("container added", metadata: ["sandbox": "\(id)", "container": "\(spec.id)", "slot": "\(slot)"])
        return SandboxContainer(
            id: spec.id, hasTerminal: spec.process.hasTerminal, mainProcess: spec.process, client: client, control: nil,
            phases: nil, pumps: pumps, controlTimeout: main.controlTimeout, slot: slot, keepOpen: keepOpen)
    }

    /// Takes a container added by `addContainer` out: the agent kills its processes and
    /// unmounts its rootfs, then its drives are emptied (the writable layer is freed) and its
    /// slot is free again. When the guest does not answer, the drives stay taken until the VM
    /// goes (the guest may still have them mounted).
    public func removeContainer(_ container: SandboxContainer) async throws {
        guard let slot = container.slot else {
            throw SandboxError("container \(container.id) is the sandbox's first: it goes with the sandbox")
        }
        for execID in pumps.processes(ofContainer: container.id) { container.forgetProcess(execID: execID) }
        _ = try await client.removeContainer(.with { $0.containerID = container.id }, timeout: .seconds(15))
        ejectDrives(slot: slot)
        container.keepOpen?.close()
        podSlots.withLock { $0[slot] = nil }
        logger.info("container removed", metadata: ["sandbox": "\(id)", "container": "\(container.id)"])
    }

    private func ejectDrives(slot: Int) {
        machine.ejectMedium(drive: pod.imageDrive(slot: slot))
        machine.ejectMedium(drive: pod.writableDrive(slot: slot))
    }
}
