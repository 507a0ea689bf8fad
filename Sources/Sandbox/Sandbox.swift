#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import CLinux
import Cgroups
import Devices
import FoundationEssentials
import HostOS
import Logging
import Storage
import TTRPC
import Untrusted
import Network
import VMM

/// The agent's vsock connection as the ttrpc client's byte stream. A wrapper rather than a
/// conformance on VsockStream, which a test target already declares for itself.
final class AgentChannel: ByteStream {
    let stream: VsockStream
    init(_ stream: VsockStream) { self.stream = stream }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try stream.read(into: buffer) }
    func write(_ bytes: UnsafeRawBufferPointer) throws { try stream.write(bytes) }
    func close() { stream.close() }
}

/// Which of the process's outputs a chunk came from.
public enum SandboxOutput: Sendable {
    case stdout
    case stderr
}

/// Makes sandboxes: cgroup, writable layer, image disk, guest initramfs, microVM, agent session
/// and container (`create`, giving a `RunningSandbox` that both `rund run` and the containerd
/// shim drive), or one process run to its end (`run`). Everything taken is released on every
/// path out.
public struct Sandbox: Sendable {
    public static let agentPort: UInt32 = 1024
    static let guestCID: UInt32 = 3
    /// The agent answers CreateContainer and StartProcess at once; a guest that does not (a
    /// hostile or wedged agent, an ignored or mangled answer) must not hold rund forever. They
    /// get a quarter of the spec's `agentTimeout` (30 s by default): on an overloaded host a
    /// slow guest is slow at both.
    static func controlCallTimeout(_ spec: SandboxSpec) -> Duration { spec.agentTimeout / 4 }

    public let stateRoot: String
    public let agentPath: String
    /// This process runs no other sandbox while this one runs (`rund run`): the whole process
    /// can then join the sandbox's cgroup, which is what confines it (see `SandboxCgroup`).
    public let soleSandboxInProcess: Bool
    /// Run a sandbox that cannot be confined by a cgroup anyway (else it does not start).
    public let allowUnconfined: Bool
    /// The guest kernel to boot; nil: rund's own when built, else the stock one.
    public let kernel: GuestKernel?
    let logger: Logger

    public init(
        stateRoot: String, agentPath: String, soleSandboxInProcess: Bool = false, allowUnconfined: Bool = false,
        kernel: GuestKernel? = nil, logger: Logger = Logger(label: "rund.sandbox")
    ) {
        self.stateRoot = stateRoot
        self.agentPath = agentPath
        self.soleSandboxInProcess = soleSandboxInProcess
        self.allowUnconfined = allowUnconfined
        self.kernel = kernel
        self.logger = logger
    }

    /// The kernel cache directory of the guest kernel this sandbox boots.
    var kernelDirectory: String {
        get throws { try GuestKernel.directory(stateRoot: stateRoot, choice: kernel) }
    }

    /// Runs `spec`'s process to its end, handing its output to `output` as it arrives (and,
    /// when `spec.interactive`, this process's stdin to it). `control` reaches the process with
    /// signals and can stop the sandbox (the exit then says so in `stoppedByHost`). `phases`, if
    /// given, gets the phase boundaries (`rund bench run`). The whole lifecycle of
    /// `RunningSandbox`, driven start to end: `create`, `start`, output and wait, `shutdown`.
    public func run(
        spec: SandboxSpec, control: SandboxControl = SandboxControl(),
        phases: SandboxPhaseRecorder? = nil,
        output: @escaping @Sendable (SandboxOutput, [UInt8]) -> Void
    ) async throws -> SandboxExit {
        let sandbox: RunningSandbox
        do {
            sandbox = try await create(spec, control: control, phases: phases)
        } catch let stopped as SandboxStoppedError {
            return SandboxExit(stoppedByHost: stopped.stop)
        }
        do {
            _ = try await sandbox.start(stdin: spec.interactive ? 0 : nil)
            let reclaimer = spec.reclaimIdleAfter.flatMap {
                IdleMemoryReclaimer(sandbox, after: $0, method: spec.reclaimIdleBy, logger: logger)
            }
            let watching = reclaimer.map { reclaimer in Task { await reclaimer.watch() } }
            let waited: Result<SandboxExit, any Error>
            do {
                waited = .success(
                    try await sandbox.waitWithOutput { stream, bytes in
                        reclaimer?.activity()
                        output(stream, bytes)
                    })
            } catch {
                waited = .failure(error)
            }
            // Ended before the VM goes: it must not touch the balloon of a closed machine.
            watching?.cancel()
            await watching?.value
            let exit = try waited.get()
            phases?.begin(.teardown)
            await sandbox.shutdown()
            return exit
        } catch {
            // The host stopped the VM: whatever broke on the way is the stop's doing.
            if let stop = control.stopped {
                sandbox.release()
                return SandboxExit(stoppedByHost: stop)
            }
            let explained = await sandbox.explain(error)
            sandbox.release()
            throw explained
        }
    }

    /// Makes the sandbox up to its container: the root, cgroup, writable layer, microVM, agent
    /// session and CreateContainer; the main process is not started yet (`RunningSandbox.start`).
    /// Everything taken is released if this throws (`SandboxStoppedError` when `control`
    /// stopped it on the way), and by `RunningSandbox.release`/`shutdown` otherwise.
    public func create(
        _ spec: SandboxSpec, control: SandboxControl = SandboxControl(),
        phases: SandboxPhaseRecorder? = nil
    ) async throws -> RunningSandbox {
        let teardown = SandboxTeardown()
        teardown.push { phases?.finish() }  // First taken, so it runs after every release below.
        teardown.push { control.ended() }
        do {
            return try await assemble(spec, control: control, phases: phases, teardown: teardown)
        } catch {
            teardown.run()
            throw error
        }
    }

    private func assemble(
        _ spec: SandboxSpec, control: SandboxControl, phases: SandboxPhaseRecorder?,
        teardown: SandboxTeardown
    ) async throws -> RunningSandbox {
        phases?.begin(.prepare)
        let id = try SandboxID.validate(spec.id)
        let root = try openRoot(spec.root)
        if let keepOpen = root.keepOpen { teardown.push { keepOpen.close() } }
        let process = try spec.processSpec(config: root.config)
        let kernelDirectory = try self.kernelDirectory
        // A template's clone reads its image through the template's virtio-blk drive; a cold
        // boot maps it with virtio-pmem where the kernel can (`RootfsDevice`).
        if spec.rootfsDevice == .pmem, case .named(let name) = spec.template {
            throw SandboxError("template \(name) reads the image through virtio-blk: its clones cannot have it on virtio-pmem")
        }
        if spec.network != .none, case .named(let name) = spec.template {
            throw SandboxError("template \(name)'s clones have no network device: use --network none, or no template")
        }
        let coldBootOnly = spec.rootfsDevice == .pmem || spec.network != .none
        let template = try self.template(for: spec, choice: coldBootOnly ? .coldBoot : spec.template)
        let device = try rootfsDevice(spec, cloning: template != nil, kernelDirectory: kernelDirectory)
        let boot = try guestBoot(imageOn: device, kernelDirectory: kernelDirectory)
        // The VM's size is checked before it sizes the cgroup.
        try VMConfiguration(kernelPath: GuestKernel.bootImage(in: kernelDirectory), memoryMiB: spec.memoryMiB, vcpuCount: spec.vcpuCount)
            .validate()

        phases?.begin(.cgroup)
        let cgroup = try SandboxCgroup(
            sandboxID: id, memoryMiB: spec.memoryMiB, vcpuCount: spec.vcpuCount,
            writableSizeMiB: spec.writableSizeMiBWithSlots, soleSandboxInProcess: soleSandboxInProcess,
            allowUnconfined: allowUnconfined, logger: logger)
        let logger = self.logger
        teardown.push { cgroup.release(logger: logger) }
        try cgroup.attachProcess()
        phases?.begin(.writableLayer)
        let writable = try WritableLayers(root: stateRoot, logger: logger).make(sizeMiB: spec.writableSizeMiB)
        teardown.push { writable.close() }

        let network = try SandboxNetwork.prepare(spec.network, sandboxID: id, stateRoot: stateRoot, logger: logger)
        if let network { teardown.push { network.release() } }

        if let stop = control.stopped { throw SandboxStoppedError(stop: stop) }
        phases?.begin(.vmCreate)
        var configuration = machineConfiguration(
            spec, kernelDirectory: kernelDirectory, boot: boot, image: root.disk, on: device, writable: writable)
        configuration.network = network.map {
            VMConfiguration.NetworkInterface(tap: $0.tap, mac: $0.interface.mac, mtu: $0.interface.mtu, offloads: spec.networkOffloads)
        }
        var restored: Machine?
        if let template {
            // The mapping keeps the memory file; the descriptor is not needed once it exists.
            defer { template.memory.close() }
            do {
                restored = try Machine(
                    restoring: template.snapshot, memoryFile: template.memory, configuration: configuration, logger: logger)
                logger.debug("sandbox cloned", metadata: ["template": "\(template.manifest.name)"])
            } catch let error as MachineSnapshotError where spec.template == .automatic {
                // Not made for this host (its CPU): a template the sandbox did not ask for by name.
                logger.warning("template not used", metadata: ["name": "\(template.manifest.name)", "reason": "\(error)"])
            }
        }
        let cloned = restored != nil
        let machine = try restored ?? Machine(configuration: configuration, logger: logger)
        logger.debug("image device", metadata: ["device": "\(device)"])
        phases?.begin(.kernelBoot)
        // A clone's kernel booted in its template: its agent listens from the first instruction.
        if cloned { phases?.begin(.agentReady) }
        let pumps = SandboxStdinPumps()
        let runner = try OSThread.spawn(name: "vm-\(id)") { _ = try? machine.run() }
        control.attach(machine)
        teardown.push {
            // Stdin pumps are joined after the machine: the VM's end closes the agent
            // connection, which ends a stdin write still in flight.
            pumps.stopAll()
            machine.stop(signal: SIGTERM)
            runner.join()
            // The VM goes now, not when the last reference does: its KVM worker threads are
            // in the sandbox's cgroup, which is given back next.
            machine.close()
            pumps.joinAll()
        }
        do {
            guard let vsock = machine.vsock else { throw SandboxError("the VM has no vsock device") }
            let stream = try await Self.connectAgent(vsock, machine: machine, within: spec.agentTimeout)
            phases?.begin(.processStart)
            // Weak: the connection's threads may outlive the run by a moment, the machine must not.
            let client = AgentClient(
                connection: try TTRPCClient(
                    stream: AgentChannel(stream),
                    confineThreads: { [weak machine] in
                        try AgentConnectionConfinement.filter.applyToCurrentThread { [weak machine] violation in
                            machine?.stop(confinementBroken: "\(violation)")
                        }
                    }))
            try await Self.createContainer(
                client, id: id, hostname: spec.hostname, imageOn: device, boot: boot,
                sendIdentity: !spec.testHooks.contains(.skipGuestIdentity), ownCgroup: spec.containerSlots > 0,
                network: network.map(Self.guestNetwork), controlTimeout: Self.controlCallTimeout(spec))
            return RunningSandbox(
                id: id, spec: spec, mainProcess: process, machine: machine, client: client, control: control,
                phases: phases, cgroup: cgroup, pumps: pumps, teardown: teardown,
                pod: PodDrives(firstDrive: configuration.disks.count - 2 * spec.containerSlots, slots: spec.containerSlots),
                stateRoot: stateRoot, logger: logger)
        } catch {
            if let stop = control.stopped { throw SandboxStoppedError(stop: stop) }
            throw await Self.explainFailure(error, machine: machine)
        }
    }

    /// The image disk and config for the container's root: a store image's EROFS, or a
    /// throwaway EROFS of a directory (`keepOpen`: its only reference, closed when the run ends).
    func openRoot(_ root: SandboxRoot) throws -> (disk: String, config: OCI.ImageConfiguration.Config, keepOpen: FileDescriptor?) {
        try Self.openRoot(root, stateRoot: stateRoot, logger: logger)
    }

    static func openRoot(
        _ root: SandboxRoot, stateRoot: String, logger: Logger
    ) throws -> (disk: String, config: OCI.ImageConfiguration.Config, keepOpen: FileDescriptor?) {
        let store = ImageStore(root: stateRoot, logger: logger)
        switch root {
        case .image(let reference):
            let image = try store.lookup(reference: reference)
            return (image.erofsPath, image.config, nil)
        case .directory(let directory):
            let erofs = try store.buildThrowawayRootfs(of: directory)
            return ("/proc/self/fd/\(erofs.rawValue)", OCI.ImageConfiguration.Config(), erofs)
        case .erofs(let path):
            return (path, OCI.ImageConfiguration.Config(), nil)
        }
    }

    /// The image's device for this sandbox: what the spec asks for, checked against the kernel
    /// and a template; by default pmem unless the sandbox is a clone or the kernel cannot.
    func rootfsDevice(_ spec: SandboxSpec, cloning: Bool, kernelDirectory: String) throws -> RootfsDevice {
        switch spec.rootfsDevice {
        case .blk: return .blk
        case .pmem:
            if let reason = GuestInitramfs.pmemUnsupportedReason(kernelDirectory: kernelDirectory) {
                throw SandboxError("cannot put the image on virtio-pmem: \(reason)")
            }
            return .pmem
        case nil:
            return cloning || GuestInitramfs.pmemUnsupportedReason(kernelDirectory: kernelDirectory) != nil ? .blk : .pmem
        }
    }

    /// How a guest whose image is on `device` gets its agent: from the agent image as its root
    /// when the kernel can (`GuestAgentImage`), else from an initramfs with the modules it needs.
    func guestBoot(imageOn device: RootfsDevice, kernelDirectory: String) throws -> GuestBoot {
        if device == .pmem, GuestAgentImage.usable(kernelDirectory: kernelDirectory) {
            return .agentImage(try GuestAgentImage.path(stateRoot: stateRoot, agentPath: agentPath))
        }
        return .initramfs(
            try GuestInitramfs.path(
                stateRoot: stateRoot, kernelDirectory: kernelDirectory, agentPath: agentPath,
                modules: GuestInitramfs.sandboxModules(imageOn: device)))
    }

    func machineConfiguration(
        _ spec: SandboxSpec, kernelDirectory: String, boot: GuestBoot, image: String, on device: RootfsDevice,
        writable: FileDescriptor
    ) -> VMConfiguration {
        var configuration = VMConfiguration(
            kernelPath: GuestKernel.bootImage(in: kernelDirectory), initrdPath: boot.initramfs, extraCommandLine: boot.commandLine,
            memoryMiB: spec.memoryMiB, vcpuCount: spec.vcpuCount,
            console: spec.consolePath.map { .file($0) } ?? .none)
        configuration.vsockGuestCID = Self.guestCID
        // Pages the guest frees go back to the host (free page reporting); a template's guest
        // has a balloon too, so its clones do.
        configuration.balloon = !spec.testHooks.contains(.noBalloon)
        configuration.stallTimeout = spec.stallTimeout
        configuration.smallGuestPages = spec.smallGuestPages
        configuration.testHooks = spec.testHooks
        let writableDisk = VMConfiguration.Disk(path: "/proc/self/fd/\(writable.rawValue)", readOnly: false)
        switch device {
        case .blk:
            // /dev/vda: the image (EROFS, read-only); /dev/vdb: the sandbox's own ext4 layer.
            configuration.disks = [.init(path: image, readOnly: true), writableDisk]
        case .pmem:
            // /dev/pmem0: the image, mapped shared and read-only (after the agent image, when that
            // is the guest's root); /dev/vda: the writable layer.
            configuration.pmemImages = (boot.agentImage.map { [$0] } ?? []) + [image]
            configuration.disks = [writableDisk]
        }
        // A pod's later containers: an image and a writable drive each, empty until they come.
        for _ in 0..<spec.containerSlots {
            configuration.disks += [.init(path: nil, readOnly: true), .init(path: nil, readOnly: false)]
        }
        return configuration
    }

    /// What the agent configures in the guest: the namespace interface's MAC, MTU, addresses
    /// and routes, which the guest takes over, and the nameservers for resolv.conf.
    static func guestNetwork(_ network: SandboxNetwork) -> AgentGuestNetwork {
        .with { message in
            message.mac = Data(network.interface.mac)
            message.mtu = UInt32(network.interface.mtu)
            message.addresses = network.interface.addresses.map { prefix in
                .with {
                    $0.address = Data(prefix.address.bytes)
                    $0.prefixLength = UInt32(prefix.length)
                }
            }
            message.routes = network.interface.routes.map { route in
                .with {
                    $0.destination = .with {
                        $0.address = Data(route.destination.address.bytes)
                        $0.prefixLength = UInt32(route.destination.length)
                    }
                    if let gateway = route.gateway { $0.gateway = Data(gateway.bytes) }
                }
            }
            message.nameservers = network.nameservers.map { Data($0.bytes) }
        }
    }

    /// CreateContainer over the image and the writable layer, on the devices `device` puts them.
    static func createContainer(
        _ client: AgentClient, id: String, hostname: String?, imageOn device: RootfsDevice, boot: GuestBoot,
        sendIdentity: Bool = true, ownCgroup: Bool = false, network: AgentGuestNetwork? = nil, controlTimeout: Duration
    ) async throws {
        // A clone without fresh entropy would share its RNG with its template: no silent default.
        let entropy = sendIdentity ? try KernelRandom.bytes(64) : []
        _ = try await client.createContainer(
            .with {
                $0.containerID = id
                $0.hostname = hostname ?? String(id.prefix(63))
                $0.rootfs = .with {
                    $0.image = .with {
                        $0.path = device == .pmem ? (boot.agentImage == nil ? "/dev/pmem0" : "/dev/pmem1") : "/dev/vda"
                        $0.fsType = "erofs"
                        // Reads map the host's page cache straight into the guest.
                        if device == .pmem { $0.options = ["dax"] }
                    }
                    $0.writable = .with {
                        $0.path = device == .pmem ? "/dev/vda" : "/dev/vdb"
                        $0.fsType = "ext4"
                    }
                    $0.upperDir = "upper"
                    $0.workDir = "work"
                }
                $0.ownCgroup = ownCgroup
                if let network { $0.network = network }
                // Every guest gets its own entropy and the host's time, cloned or not.
                if sendIdentity {
                    $0.identity = .with {
                        $0.entropy = Data(entropy)
                        $0.hostRealtimeNs = RealtimeClock.nanoseconds()
                    }
                }
            }, timeout: controlTimeout)
    }

    /// Streams both outputs concurrently to their ends, then Wait.
    static func waitForProcess(
        _ client: AgentClient, id: String, execID: String = "",
        output: @escaping @Sendable (SandboxOutput, [UInt8]) -> Void
    ) async throws -> SandboxExit {
        let ref = AgentProcessRef.with {
            $0.containerID = id; $0.execID = execID
        }
        async let out: Void = stream(client, ref, .stdout, output)
        async let err: Void = stream(client, ref, .stderr, output)
        _ = try await (out, err)
        return SandboxExit(try await client.waitProcess(.with { $0.process = ref }))
    }

    /// A failed agent call: when the guest is gone (or goes within a moment, as a connection
    /// broken by a panic precedes the VM's end), why it went, in one line.
    static func explainFailure(_ error: Error, machine: Machine) async -> Error {
        if let status = error as? TTRPCStatus, status.code == .deadlineExceeded {
            // A stopped guest (the rig's emulator loses some) silences its agent too: with the
            // stall watchdog on, it gets the time it needs to say which of the two this was.
            if let ended = await stallVerdict(machine) { return SandboxError(guestEnded: ended) }
            return SandboxError(.agentUnresponsive, "the guest agent did not answer in time (\(UntrustedText.escaped(status.message)))")
        }
        guard error is TTRPCConnectionError else { return error }
        for _ in 0..<40 where machine.exitReason == nil { try? await Task.sleep(for: .milliseconds(50)) }
        if let ended = machine.exitReason { return SandboxError(guestEnded: ended) }
        return SandboxError(.agentUnresponsive, "the connection to the guest agent broke (\(error))")
    }

    /// How the VM ended, if it ends within the stall watchdog's timeout (plus the few seconds of
    /// its two looks and vCPU snapshots) of a call that got no answer; nil if it runs on. The
    /// wait is whole: a guest's last exits (a vsock reset, its console) may come after its
    /// agent's last answer, so progress seen now does not clear it.
    static func stallVerdict(_ machine: Machine) async -> MachineExit? {
        guard let limit = machine.stallTimeout else { return machine.exitReason }
        let deadline = ContinuousClock.now + limit + .seconds(5)
        while machine.exitReason == nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        return machine.exitReason
    }

    static func stream(
        _ client: AgentClient, _ ref: AgentProcessRef, _ which: SandboxOutput,
        _ output: @Sendable (SandboxOutput, [UInt8]) -> Void
    ) async throws {
        while true {
            let request = AgentReadOutputRequest.with { $0.process = ref }
            let chunk = which == .stdout ? try await client.readStdout(request) : try await client.readStderr(request)
            if !chunk.data.isEmpty { output(which, [UInt8](chunk.data)) }
            if chunk.eof { return }
        }
    }

    /// Connects to the agent, retrying while the guest boots; a VM that ends first or an agent
    /// that never answers is a one-line error.
    static func connectAgent(_ vsock: VsockHostEndpoint, machine: Machine, within limit: Duration) async throws -> VsockStream {
        do {
            return try await vsock.connect(guestPort: agentPort, retryingFor: limit) { machine.exitReason != nil }
        } catch let error as VsockError {
            if let ended = machine.exitReason {
                throw SandboxError("the VM ended before its agent answered: \(ended)")
            }
            throw SandboxError(.agentUnresponsive, "the guest agent did not answer within \(limit) (\(error))")
        }
    }
}

/// What a cold-booted guest runs its agent from.
enum GuestBoot {
    /// An initramfs holding the agent as /init and the modules it loads.
    case initramfs(String)
    /// The agent image, mapped as the first pmem device and mounted as the root (`GuestAgentImage`).
    case agentImage(String)

    var initramfs: String? {
        if case .initramfs(let path) = self { return path }
        return nil
    }

    var agentImage: String? {
        if case .agentImage(let path) = self { return path }
        return nil
    }

    var commandLine: String { agentImage == nil ? "quiet" : "quiet " + GuestAgentImage.commandLine }
}
