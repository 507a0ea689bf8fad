#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS
import Logging
import Synchronization
import TTRPC
import VMM

/// The host stopped the sandbox (`SandboxControl.stop`) before it was ready.
public struct SandboxStoppedError: Error, CustomStringConvertible, Sendable {
    public let stop: SandboxControl.Stop
    public var description: String { "the sandbox was stopped before it was ready (\(SignalName.of(stop.signal)))" }
}

/// One sandbox that is up: its microVM runs, the guest agent answers and the container exists
/// (`Sandbox.create`). Its first container is `main` (the methods below that take an exec id
/// act on it); a sandbox made with container slots takes more (`addContainer`, a Kubernetes
/// pod's). `shutdown` (or `release`, or the control's hard stop followed by `release`) ends it
/// and gives back everything it took: VM, agent connection, stdin pumps, writable layers,
/// cgroup. Used by `rund run` (through `Sandbox.run`) and by the containerd shim.
public final class RunningSandbox: Sendable {
    public let id: String
    public let memoryMiB: Int
    public let vcpuCount: Int
    public let main: SandboxContainer
    let machine: Machine
    let client: AgentClient
    public let control: SandboxControl
    let phases: SandboxPhaseRecorder?
    let cgroup: SandboxCgroup
    let writableSizeMiB: Int
    let pumps: SandboxStdinPumps
    let teardown: SandboxTeardown
    /// Where a pod's later containers go, and which slots they hold.
    let pod: PodDrives
    let podSlots: Mutex<[String?]>
    let stateRoot: String
    let logger: Logger

    init(
        id: String, spec: SandboxSpec, mainProcess: AgentProcessSpec, machine: Machine, client: AgentClient,
        control: SandboxControl, phases: SandboxPhaseRecorder?, cgroup: SandboxCgroup, pumps: SandboxStdinPumps,
        teardown: SandboxTeardown, pod: PodDrives, stateRoot: String, logger: Logger
    ) {
        self.id = id
        memoryMiB = spec.memoryMiB
        vcpuCount = spec.vcpuCount
        writableSizeMiB = spec.writableSizeMiBWithSlots
        main = SandboxContainer(
            id: id, hasTerminal: spec.terminal != nil, mainProcess: mainProcess, client: client, control: control,
            phases: phases, pumps: pumps, controlTimeout: Sandbox.controlCallTimeout(spec))
        self.machine = machine
        self.client = client
        self.control = control
        self.phases = phases
        self.cgroup = cgroup
        self.pumps = pumps
        self.teardown = teardown
        self.pod = pod
        podSlots = Mutex([String?](repeating: nil, count: pod.slots))
        self.stateRoot = stateRoot
        self.logger = logger
    }

    // MARK: the first container's processes

    public var hasTerminal: Bool { main.hasTerminal }

    /// `SandboxContainer.start` of the first container.
    @discardableResult
    public func start(stdin input: Int32? = nil) async throws -> UInt32 { try await main.start(stdin: input) }

    /// `SandboxContainer.exec` in the first container.
    @discardableResult
    public func exec(_ execID: String, process: AgentProcessSpec, stdin input: Int32? = nil) async throws -> UInt32 {
        try await main.exec(execID, process: process, stdin: input)
    }

    /// `SandboxContainer.waitWithOutput` in the first container.
    public func waitWithOutput(
        execID: String = "",
        output: @escaping @Sendable (SandboxOutput, [UInt8]) -> Void
    ) async throws -> SandboxExit {
        try await main.waitWithOutput(execID: execID, output: output)
    }

    public func wait(execID: String = "") async throws -> SandboxExit { try await main.wait(execID: execID) }

    public func signal(_ signal: Int32, execID: String = "", all: Bool = false) async throws {
        try await main.signal(signal, execID: execID, all: all)
    }

    public func resize(execID: String = "", to size: WindowSize) async throws { try await main.resize(execID: execID, to: size) }

    public func closeStdin(execID: String = "") async throws { try await main.closeStdin(execID: execID) }

    public func forgetProcess(execID: String) { main.forgetProcess(execID: execID) }

    /// Resource use inside the guest (the first container's).
    public func guestStats() async throws -> AgentStatsResponse { try await main.guestStats() }

    /// Has the guest write back and drop its page cache: free page reporting then hands the
    /// freed pages to the host.
    public func dropGuestCaches() async throws -> AgentDropCachesResponse { try await main.dropGuestCaches() }

    // MARK: the VM

    /// Stops the guest's vCPUs (its processes stop with them) until `resume`.
    public func pause() throws {
        do {
            try machine.pause()
        } catch {
            throw SandboxError("cannot pause the sandbox: \(error)")
        }
    }

    public func resume() {
        machine.resume()
    }

    public var isPaused: Bool { machine.isPaused }

    /// How the VM ended, once it has.
    public var vmExit: MachineExit? { machine.exitReason }

    /// Whether the VM has a balloon (every sandbox's has, cold-booted or cloned, unless a test
    /// hook left it out).
    public var hasBalloon: Bool { machine.balloon != nil }

    /// MiB the guest says it has given into its balloon (0 without one).
    public var balloonMiB: Int { Int(machine.balloon?.reportedBalloonPages ?? 0) / Self.balloonPagesPerMiB }

    /// Asks the guest to give `mebibytes` of its memory back to the host through its balloon
    /// (0: take none, giving back what it holds). The guest does it when it can, and takes pages
    /// back on its own under memory pressure (the balloon deflates on OOM).
    public func setBalloon(mebibytes: Int) throws {
        guard let balloon = machine.balloon else { throw SandboxError("the sandbox's VM has no balloon") }
        guard (0...memoryMiB).contains(mebibytes) else {
            throw SandboxError("a balloon of \(mebibytes) MiB does not fit a \(memoryMiB) MiB guest")
        }
        balloon.setTarget(pages: UInt32(mebibytes * Self.balloonPagesPerMiB))
    }

    /// The balloon's pages are 4 KiB whatever the guest's page size (virtio 1.2, 5.5.6).
    static let balloonPagesPerMiB = 256

    /// The sandbox's cgroup directories (empty when it runs unconfined).
    public var cgroupPaths: [String] { cgroup.paths }

    /// Changes the CPU bandwidth the sandbox's cgroup allows: `quota` of every `period`
    /// microseconds (nil quota: as many CPUs as vCPUs, the sandbox's default).
    public func updateCPU(quotaMicros: Int64?, periodMicros: Int64?) throws {
        var limits = SandboxCgroup.limits(memoryMiB: memoryMiB, vcpuCount: vcpuCount, writableSizeMiB: writableSizeMiB)
        if let periodMicros, !(1_000...1_000_000).contains(periodMicros) {
            throw SandboxError("cpu period \(periodMicros) us is out of range: use 1000-1000000")
        }
        if let quotaMicros, quotaMicros < 1_000 {
            throw SandboxError("cpu quota \(quotaMicros) us is too small: use at least 1000")
        }
        if let periodMicros {
            limits.cpuPeriodMicros = periodMicros
            limits.cpuQuotaMicros = Int64(vcpuCount) * periodMicros + periodMicros / 4
        }
        if let quotaMicros { limits.cpuQuotaMicros = quotaMicros }
        try cgroup.update(limits)
    }

    // MARK: the end

    /// A failed call of this sandbox in one line: why the guest went, when it did.
    public func explain(_ error: Error) async -> Error {
        await Sandbox.explainFailure(error, machine: machine)
    }

    /// The graceful end: the agent's Shutdown (it kills what runs, syncs and powers the guest
    /// off), a moment for the VM to end, then `release`.
    public func shutdown() async {
        phases?.bootMarker(elapsedSinceVMCreate: machine.bootMarkerNanoseconds)  // Written by now.
        pumps.stopAll()
        if machine.exitReason == nil, control.stopped == nil {
            _ = try? await client.shutdown(timeout: .seconds(10))
            for _ in 0..<100 where machine.exitReason == nil { try? await Task.sleep(for: .milliseconds(50)) }
        }
        release()
    }

    /// Stops the VM (if it still runs) and gives back everything the sandbox holds. Idempotent;
    /// blocks the calling thread until the VM's threads have ended.
    public func release() {
        teardown.run()
    }
}
