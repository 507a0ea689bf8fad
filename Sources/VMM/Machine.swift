#if canImport(Glibc)
import Glibc
#endif
import Boot
import CLinux
import Devices
import GuestMemory
import HostOS
import KVM
import Logging
import Synchronization

/// One microVM: guest memory, the in-kernel irqchip, devices, and one thread per vCPU.
/// Build it with `init` (nothing runs yet), then `run()` blocks until the guest ends.
public final class Machine: @unchecked Sendable {
    // Immutable after init except `threads`: `run()` fills and empties it, `pause()` reads it.
    public let configuration: VMConfiguration
    let logger: Logger
    let startNanoseconds: UInt64
    let vm: VirtualMachine
    let memory: GuestMemory
    let vcpus: [VCPU]
    let bus: IOBus
    let state: MachineState
    let console: ConsoleSink
    let bootMarker: BootMarker
    private let threads = Mutex<[OSThread]>([])
    /// VM exits the VMM has handled: the stall watchdog's sign of life from the guest.
    private let exitsHandled = Atomic<UInt64>(0)
    /// While the watchdog asks, each vCPU thread files what its vCPU is doing here.
    private let snapshots = Mutex<[UInt32: VCPUSnapshot]?>(nil)
    /// Set while the VM is paused (`pause()`): vCPU threads park outside KVM_RUN until cleared.
    private let pauseRequested = Atomic<Bool>(false)
    /// vCPU threads parked by a pause.
    private let parkedVCPUs = Atomic<Int>(0)
    // Keep the device objects (and their fds) alive as long as the machine.
    private let devices: [AnyObject]
    /// The devices a snapshot saves and a restore puts back.
    let serial: Serial8250
    let transports: [VirtioMMIOTransport]
    let disks: [VirtioBlock]
    /// Each pmem image's device; its mapping (`pmemRegions`) lives as long as the machine.
    let pmemDevices: [VirtioPmem]
    private let pmemRegions: [GuestRegion]
    /// The balloon (with `VMConfiguration.balloon`): free page reporting, and `setTarget` to take memory back.
    public let balloon: VirtioBalloon?
    /// vsock: the host end of the guest's virtio-vsock device (nil without `vsockGuestCID`).
    /// Listen and connect from any thread, before or during `run()`.
    public let vsock: VsockHostEndpoint?
    /// The network interface's device (with `VMConfiguration.network`) and its I/O thread.
    public let network: VirtioNet?
    let networkWorker: VirtioNetWorker?

    /// Builds a machine that boots `configuration`'s kernel.
    public convenience init(configuration: VMConfiguration, logger: Logger = Logger(label: "rund.vmm")) throws {
        try self.init(configuration: configuration, guest: .boot, logger: logger)
    }

    /// Builds a machine that resumes `snapshot`: guest memory is a private copy-on-write mapping
    /// of `memoryFile` (pages stay shared with every other machine restored from it until this
    /// guest writes them, and nothing is written back), the vCPUs, irqchip, PIT, clock and
    /// devices are as they were. `configuration` gives what is this machine's own: its console,
    /// the backing files of its disks (a template's empty drives get them here, and the guest is
    /// told its disks changed) and its vsock CID; its vCPUs, memory and devices must be the
    /// snapshot's. Everything is checked against the snapshot and this host before a VM is
    /// created; a restore that fails later leaves nothing behind and never runs the guest.
    public convenience init(
        restoring snapshot: MachineSnapshot, memoryFile: FileDescriptor, configuration: VMConfiguration,
        logger: Logger = Logger(label: "rund.vmm")
    ) throws {
        try self.init(configuration: configuration, guest: .restore(snapshot, memoryFile: memoryFile), logger: logger)
    }

    /// Where the guest comes from: the one stage boot and restore do not share.
    enum GuestSource {
        case boot
        case restore(MachineSnapshot, memoryFile: FileDescriptor)
    }

    private init(configuration: VMConfiguration, guest: GuestSource, logger: Logger) throws {
        startNanoseconds = MonotonicNanoseconds.now()
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger

        // Stages, shared by boot and restore but for the guest itself: host files, the VM and its
        // memory, legacy devices, virtio devices, then the guest (its image loaded, or its
        // saved state put back), vCPUs.
        let kvm = try KVMSystem()
        if case .restore(let snapshot, _) = guest { try snapshot.check(against: configuration, kvm: kvm) }
        let files = try HostFiles(configuration, readsGuestImage: guest.isBoot)
        vm = try Self.makeVirtualMachine(kvm)
        let ramRegions = X86Layout.ramRegions(memoryBytes: configuration.memoryMiB << 20)
        switch guest {
        case .boot: memory = try GuestMemory.anonymous(ramRegions, smallPages: configuration.smallGuestPages)
        case .restore(_, let file): memory = try GuestMemory.copyOnWrite(of: file, layout: ramRegions)
        }
        try Self.registerMemory(memory, in: vm)
        pmemRegions = try Self.mapPmem(
            files.pmemImages, in: vm, firstSlot: memory.hypervisorMappings.count, supportedCPUID: try kvm.supportedCPUID())

        let state = try MachineState()
        self.state = state
        let console = ConsoleSink(output: files.console)
        self.console = console
        let breakConfinement: (@Sendable () -> Void)? =
            configuration.testHooks.contains(.forbiddenSystemCallAtBootMarker)
            ? { @Sendable in _ = rund_seccomp_forbidden_call() } : nil
        bootMarker = BootMarker(start: startNanoseconds, onFirstWrite: breakConfinement)

        let serial = Serial8250(
            base: X86Layout.com1Port, interrupt: try IRQFDLine(vm: vm, gsi: X86Layout.com1GSI),
            output: { console.write($0) })
        self.serial = serial
        let i8042 = I8042(onReset: { state.finish(console.panicLine.map(MachineExit.guestPanicked) ?? .rebooted) })
        let sleep = SleepControlPort(onPowerOff: { state.finish(.poweredOff) })

        // Disks first (vda, vdb, ...), then vsock, then pmem (pmem0, pmem1, ...), then the balloon.
        var virtio = VirtioSlotWiring(vm: vm, memory: memory)
        var disks: [VirtioBlock] = []
        for (index, (disk, file)) in zip(configuration.disks, files.disks).enumerated() {
            let device =
                try file.map { try VirtioBlock(file: $0, readOnly: disk.readOnly, identifier: "rund-disk\(index)") }
                ?? VirtioBlock(emptyReadOnly: disk.readOnly, identifier: "rund-disk\(index)")
            try virtio.attach(device)
            disks.append(device)
        }
        if let cid = configuration.vsockGuestCID {
            let device = try Self.makeVsock(guestCID: cid)
            device.attach(to: try virtio.attach(device))
            vsock = device.host
        } else {
            vsock = nil
        }
        let readOnlyWindows = pmemRegions.map { region in
            IOBus.MMIORange(base: region.guestBase, size: UInt64(region.size), device: ReadOnlyWindow(base: region.guestBase))
        }
        pmemDevices = try pmemRegions.map { region in
            let device = VirtioPmem(start: region.guestBase, size: UInt64(region.size))
            try virtio.attach(device)
            return device
        }
        if configuration.balloon {
            let device = VirtioBalloon(memory: memory)
            let transport = try virtio.attach(device)
            device.onConfigurationChange { [weak transport] in transport?.configurationChanged() }
            balloon = device
        } else {
            balloon = nil
        }
        if let interface = configuration.network {
            (network, networkWorker) = try Self.attachNetwork(
                interface, to: &virtio, vm: vm, state: state, confine: configuration.confineThreads)
        } else {
            (network, networkWorker) = (nil, nil)
        }
        transports = virtio.transports
        self.disks = disks
        devices = [serial, i8042, sleep] + virtio.transports
        bus = IOBus(
            ports: [
                IOBus.PortRange(base: X86Layout.com1Port, count: 8, device: serial),
                IOBus.PortRange(base: 0x60, count: 1, device: i8042),
                IOBus.PortRange(base: 0x64, count: 1, device: i8042),
                IOBus.PortRange(base: X86Layout.acpiSleepControlPort, count: 1, device: sleep),
            ],
            mmio: virtio.ranges + [IOBus.MMIORange(base: VMMAddresses.bootMarker, size: 0x1000, device: bootMarker)] + readOnlyWindows)

        switch guest {
        case .boot:
            let boot = try Self.loadGuest(
                configuration, files: files, memory: memory, ramRegions: ramRegions,
                acpiDevices: virtio.acpiDevices)
            vcpus = try Self.makeVCPUs(configuration.vcpuCount, in: vm, supported: try kvm.supportedCPUID(), boot: boot)
        case .restore(let snapshot, _):
            vcpus = try Self.restoreGuest(snapshot, vm: vm, serial: serial, transports: virtio.transports, disks: disks)
        }
        logger.debug(
            guest.isBoot ? "machine built" : "machine restored",
            metadata: [
                "memoryMiB": "\(configuration.memoryMiB)", "vcpus": "\(configuration.vcpuCount)",
                "disks": "\(configuration.disks.count)", "cmdline": "\(configuration.extraCommandLine)",
            ])
    }

    /// How the VM ended, once it has (nil while it runs).
    /// Gives drive `index` (of `VMConfiguration.disks`, one left empty) its backing file while
    /// the guest runs, and tells the guest's driver its capacity changed.
    public func insertMedium(drive index: Int, _ file: FileDescriptor) throws {
        guard disks.indices.contains(index) else { throw VMError.setup("the VM has no drive \(index)") }
        try disks[index].insertMedium(file)
        transports[index].configurationChanged()
    }

    /// Empties drive `index`: the guest's driver sees capacity 0 and every request fails.
    public func ejectMedium(drive index: Int) {
        guard disks.indices.contains(index) else { return }
        disks[index].ejectMedium()
        transports[index].configurationChanged()
    }

    public var exitReason: MachineExit? { state.result }

    /// Nanoseconds from `init` to the guest's first write to the boot-marker port.
    public var bootMarkerNanoseconds: UInt64? { bootMarker.elapsedNanoseconds }

    /// Starts the network device's I/O thread and every vCPU, and blocks until the guest powers
    /// off, reboots, panics or `stop` is called. All of those threads have exited when this returns.
    public func run() throws -> MachineExit {
        KickSignal.install()
        do {
            try networkWorker?.start()
            for vcpu in vcpus {
                let thread = try OSThread.spawn(name: "vcpu\(vcpu.id)") { [self] in runLoop(vcpu) }
                threads.withLock { $0.append(thread) }
            }
        } catch {
            // Stop the vCPUs already started; the VM still ends with a recorded reason.
            state.finish(.crashed("cannot start the VM's threads: \(error)"))
        }
        let exit = configuration.stallTimeout.map(waitWatchingForStalls) ?? state.waitForExit()
        let started = threads.withLock { $0 }
        for (vcpu, thread) in zip(vcpus, started) {
            vcpu.requestExit()
            thread.send(signal: KickSignal.number)
        }
        for thread in started { thread.join() }
        threads.withLock { $0.removeAll() }
        networkWorker?.stop()
        // vsock: the guest is gone; host calls blocked on it must not wait for it.
        vsock?.resetAllConnections()
        logger.debug("machine ended", metadata: ["exit": "\(exit)"])
        return exit
    }

    /// Destroys the VM in the kernel once `run()` has returned (or was never called): vCPUs and
    /// VM descriptor closed, so KVM's per-VM worker threads (which it puts in this process's
    /// cgroups) are gone before the caller gives its cgroup back. Guest memory stays mapped
    /// until the machine is released. Idempotent; the machine cannot run afterwards.
    public func close() {
        state.finish(.stoppedBySignal(SIGKILL))
        guard threads.withLock({ $0.isEmpty }) else { return }  // run() still winding down.
        for vcpu in vcpus { vcpu.close() }
        vm.close()
    }

    /// Ends the VM from any thread (a signal handler thread, a timeout).
    public func stop(signal: Int32) {
        state.finish(.stoppedBySignal(signal))
    }

    /// Pauses the guest: every vCPU leaves KVM_RUN and parks until `resume()` (devices keep
    /// their state; the guest's clock jumps on resume). Returns once every vCPU has parked;
    /// throws when one does not within `limit` (the VM then resumes) or the VM has ended.
    public func pause(within limit: Duration = .seconds(5)) throws(VMError) {
        guard !state.isFinished else { throw VMError.setup("the VM has ended") }
        guard !pauseRequested.exchange(true, ordering: .acquiringAndReleasing) else { return }
        // Every vCPU, started or not: one whose thread starts later parks at its first entry.
        for vcpu in vcpus { vcpu.requestExit() }
        for thread in threads.withLock({ $0 }) { thread.send(signal: KickSignal.number) }
        let deadline = ContinuousClock.now + limit
        while parkedVCPUs.load(ordering: .acquiring) < vcpus.count {
            if state.isFinished { return }
            guard ContinuousClock.now < deadline else {
                resume()
                throw VMError.setup("the vCPUs did not pause within \(limit)")
            }
            usleep(1000)
        }
        // Devices stop moving their queues too (host-side vsock traffic waits in the rings), so
        // nothing changes guest memory while paused and a snapshot sees it still.
        for transport in transports { transport.freeze() }
        // The guest's kvmclock learns it was paused, so its soft-lockup watchdog skips the gap.
        for vcpu in vcpus { vcpu.notifyClockPaused() }
    }

    /// Lets the vCPUs of a paused guest run again.
    public func resume() {
        guard pauseRequested.load(ordering: .acquiring) else { return }
        for vcpu in vcpus { vcpu.notifyClockPaused() }
        for transport in transports { transport.thaw() }
        pauseRequested.store(false, ordering: .releasing)
    }

    /// True once `pause()` has parked every vCPU (what a snapshot needs).
    var isFullyPaused: Bool { isPaused && parkedVCPUs.load(ordering: .acquiring) == vcpus.count }

    /// True while the guest is paused.
    public var isPaused: Bool { pauseRequested.load(ordering: .acquiring) }

    /// On a vCPU thread just out of KVM_RUN: parks while a pause lasts (or until the VM ends).
    private func parkWhilePaused() {
        guard pauseRequested.load(ordering: .acquiring) else { return }
        parkedVCPUs.add(1, ordering: .acquiringAndReleasing)
        while pauseRequested.load(ordering: .acquiring) && !state.isFinished { usleep(2000) }
        parkedVCPUs.subtract(1, ordering: .acquiringAndReleasing)
    }

    /// Ends the VM because a thread serving it (one of the host's, outside the machine: the
    /// agent connection's) broke its confinement.
    public func stop(confinementBroken report: String) {
        state.finish(.confinementBroken(report))
    }

    private func runLoop(_ vcpu: VCPU) {
        KickSignal.unblockInCurrentThread()
        if configuration.confineThreads {
            do {
                try VCPUConfinement.filter.applyToCurrentThread { [state] violation in
                    state.finish(.confinementBroken("\(violation)"))
                }
            } catch {
                // Fail closed: a vCPU that cannot be confined does not run the guest.
                state.finish(.crashed("cannot confine vCPU \(vcpu.id)'s thread: \(error)"))
                return
            }
        }
        defer { if configuration.confineThreads { SeccompFilter.threadEnding() } }
        while !state.isFinished && !SeccompFilter.currentThreadWasTrapped {
            let exit: VCPU.Exit
            do {
                exit = try vcpu.run()
            } catch {
                state.finish(.crashed("\(error)"))
                return
            }
            if case .interrupted = exit {
                answerSnapshotRequest(vcpu)
                parkWhilePaused()
                continue
            }
            exitsHandled.add(1, ordering: .relaxed)
            switch exit {
            case let .io(port, isWrite, size, count, data):
                for i in 0..<count {
                    let slice = UnsafeMutableRawBufferPointer(rebasing: data[(i * size)..<((i + 1) * size)])
                    if isWrite { bus.portWrite(port, UnsafeRawBufferPointer(slice)) } else { bus.portRead(port, into: slice) }
                }
            case let .mmio(address, isWrite, data):
                let address = GuestAddress(address)
                if isWrite { bus.mmioWrite(address, UnsafeRawBufferPointer(data)) } else { bus.mmioRead(address, into: data) }
            case .interrupted:
                break
            case .halt:
                state.finish(.crashed("vCPU \(vcpu.id) halted outside the in-kernel irqchip"))
            case .shutdown:
                // Where it faulted goes into the report: the registers as KVM left them.
                let registers = (try? VCPUSnapshot(vcpu)).map { " (\($0))" } ?? ""
                state.finish(
                    console.panicLine.map(MachineExit.guestPanicked) ?? .crashed("triple fault on vCPU \(vcpu.id)\(registers)"))
            case .systemEvent(let type):
                switch Int32(type) {
                case KVM_SYSTEM_EVENT_SHUTDOWN: state.finish(.poweredOff)
                case KVM_SYSTEM_EVENT_RESET: state.finish(console.panicLine.map(MachineExit.guestPanicked) ?? .rebooted)
                default: state.finish(.guestPanicked(console.panicLine ?? "system event \(type)"))
                }
            case .failEntry(let reason):
                state.finish(.crashed("KVM entry failed on vCPU \(vcpu.id), reason 0x\(String(reason, radix: 16))"))
            case .internalError(let suberror):
                state.finish(
                    .crashed("KVM internal error \(suberror) on vCPU \(vcpu.id)" + ((try? VCPUSnapshot(vcpu)).map { ": \($0)" } ?? "")))
            case .unhandled(let reason):
                state.finish(.crashed("unhandled exit \(reason) on vCPU \(vcpu.id)"))
            }
        }
    }

    // MARK: stall watchdog

    /// How long the guest may make no progress before the VM ends as stalled (nil: never).
    public var stallTimeout: Duration? { configuration.stallTimeout }

    /// VM exits handled, plus frames the network device moved: a guest busy with network I/O
    /// goes through ioeventfds and irqfds, without exits, and is not stalled.
    private var progressCount: UInt64 {
        guard let counted = network?.counterValues else { return exitsHandled.load(ordering: .relaxed) }
        return exitsHandled.load(ordering: .relaxed) &+ counted.sentFrames &+ counted.receivedFrames
    }

    /// `waitForExit`, ending the VM as stalled when the guest makes no progress for `limit`: no
    /// VM exit or network frame (so no console output, no device or vsock traffic) while a vCPU
    /// stays runnable. An idle guest (every vCPU halted) is not stalled, however long it stays quiet.
    private func waitWatchingForStalls(_ limit: Duration) -> MachineExit {
        var seen = progressCount
        var quietSince = ContinuousClock.now
        while true {
            if let exit = state.waitForExit(milliseconds: 1000) { return exit }
            let count = progressCount
            // A paused guest makes no progress on purpose.
            if isPaused { quietSince = .now }
            if count != seen || ContinuousClock.now - quietSince < limit {
                if count != seen { quietSince = .now }
                seen = count
                continue
            }
            // Two looks a second apart: a vCPU caught between two timer ticks is not stuck.
            let first = snapshotVCPUs()
            if let exit = state.waitForExit(milliseconds: 1000) { return exit }
            let second = snapshotVCPUs()
            let busy = vcpus.filter { vcpu in [first, second].allSatisfy { $0[vcpu.id]?.isHalted != true } }
            guard progressCount == seen, !busy.isEmpty else {
                quietSince = .now
                continue
            }
            let report = busy.map { vcpu in
                [first[vcpu.id], second[vcpu.id]].map { $0.map(String.init(describing:)) ?? "vCPU \(vcpu.id) did not answer" }
                    .joined(separator: "; a second later: ")
            }
            let console = self.console.lastLines.map { "; console ends: " + $0.joined(separator: " | ") } ?? "; no console output"
            state.finish(.stalled("no VM exit for \(limit) while a vCPU ran: " + report.joined(separator: "; ") + console))
        }
    }

    /// What every vCPU is doing: each thread is kicked out of KVM_RUN and files a snapshot.
    /// A vCPU that does not answer within two seconds is missing from the result.
    private func snapshotVCPUs() -> [UInt32: VCPUSnapshot] {
        snapshots.withLock { $0 = [:] }
        for (vcpu, thread) in zip(vcpus, threads.withLock({ $0 })) {
            vcpu.requestExit()
            thread.send(signal: KickSignal.number)
        }
        let deadline = ContinuousClock.now + .seconds(2)
        var taken: [UInt32: VCPUSnapshot] = [:]
        repeat {
            _ = state.waitForExit(milliseconds: 10)
            taken = snapshots.withLock { $0 ?? [:] }
        } while taken.count < vcpus.count && ContinuousClock.now < deadline && !state.isFinished
        snapshots.withLock { $0 = nil }
        return taken
    }

    /// On a vCPU thread just out of KVM_RUN: files a snapshot if the watchdog asked for one.
    private func answerSnapshotRequest(_ vcpu: VCPU) {
        let wanted = snapshots.withLock { $0.map { $0[vcpu.id] == nil } ?? false }
        guard wanted, let snapshot = try? VCPUSnapshot(vcpu) else { return }
        snapshots.withLock { $0?[vcpu.id] = snapshot }
    }
}

/// Guest addresses of rund's own devices (the guest talks to the VMM through them).
public enum VMMAddresses {
    /// Any write marks "guest init is running" (see `Machine.bootMarkerNanoseconds`).
    public static let bootMarker: GuestAddress = 0xd100_0000
}

/// virtio-mmio device slots: a page each in the MMIO gap, one GSI each.
enum VirtioSlots {
    static let maxDevices = X86Layout.maxVirtioMMIODevices
    /// Slot `index`; nil for an index whose window would lie past the address space.
    static func slot(_ index: Int) -> (base: GuestAddress, size: UInt64, gsi: UInt32)? {
        X86Layout.virtioMMIOAddress(slot: index).map { ($0, X86Layout.virtioMMIOSlotSize, X86Layout.virtioGSI(slot: index)) }
    }
}
