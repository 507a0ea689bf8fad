#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS
import Synchronization
import TTRPC
import VMM

/// The host stopped the sandbox (`SandboxControl.stop`) before it was ready.
public struct SandboxStoppedError: Error, CustomStringConvertible, Sendable {
    public let stop: SandboxControl.Stop
    public var description: String { "the sandbox was stopped before it was ready (\(SignalName.of(stop.signal)))" }
}

/// One sandbox that is up: its microVM runs, the guest agent answers and the container exists
/// (`Sandbox.create`). Its main process (exec id "") is started with `start`, more with `exec`;
/// each is waited for, signalled, resized and fed stdin by exec id. `shutdown` (or `release`,
/// or the control's hard stop followed by `release`) ends it and gives back everything it took:
/// VM, agent connection, stdin pumps, writable layer, cgroup. Used by `rund run` (through
/// `Sandbox.run`) and by the containerd shim.
public final class RunningSandbox: Sendable {
    public let id: String
    public let memoryMiB: Int
    public let vcpuCount: Int
    public let hasTerminal: Bool
    let mainProcess: AgentProcessSpec
    let machine: Machine
    let client: AgentClient
    public let control: SandboxControl
    let phases: SandboxPhaseRecorder?
    let cgroup: SandboxCgroup
    let writableSizeMiB: Int
    /// How long StartProcess and ExecProcess may take (`Sandbox.controlCallTimeout`).
    let controlTimeout: Duration
    let pumps: SandboxStdinPumps
    let teardown: SandboxTeardown

    init(
        id: String, spec: SandboxSpec, mainProcess: AgentProcessSpec, machine: Machine, client: AgentClient,
        control: SandboxControl, phases: SandboxPhaseRecorder?, cgroup: SandboxCgroup, pumps: SandboxStdinPumps,
        teardown: SandboxTeardown
    ) {
        self.id = id
        memoryMiB = spec.memoryMiB
        vcpuCount = spec.vcpuCount
        writableSizeMiB = spec.writableSizeMiB
        hasTerminal = spec.terminal != nil
        controlTimeout = Sandbox.controlCallTimeout(spec)
        self.mainProcess = mainProcess
        self.machine = machine
        self.client = client
        self.control = control
        self.phases = phases
        self.cgroup = cgroup
        self.pumps = pumps
        self.teardown = teardown
    }

    // MARK: processes

    /// Starts the main process; with `stdin`, copies that descriptor (a duplicate: the caller
    /// keeps its own) to the process's stdin (the spec must have asked for one). Returns its pid
    /// in the guest.
    @discardableResult
    public func start(stdin input: Int32? = nil) async throws -> UInt32 {
        let response = try await client.startProcess(
            .with {
                $0.containerID = id
                $0.process = mainProcess
            }, timeout: controlTimeout)
        phases?.begin(.exit)
        if let input { try startPump(execID: "", input: input) }
        control.started(client: client, containerID: id, hasTerminal: hasTerminal)
        return response.pid
    }

    /// Starts another process in the container under `execID`; `stdin` as for `start`.
    @discardableResult
    public func exec(_ execID: String, process: AgentProcessSpec, stdin input: Int32? = nil) async throws -> UInt32 {
        let response = try await client.execProcess(
            .with {
                $0.containerID = id
                $0.execID = execID
                $0.process = process
            }, timeout: controlTimeout)
        if let input { try startPump(execID: execID, input: input) }
        return response.pid
    }

    private func startPump(execID: String, input: Int32) throws {
        pumps.start(try SandboxStdin(input: input, client: client, process: reference(execID)), execID: execID)
    }

    /// The main process's stdout and stderr, streamed concurrently to their ends, then its exit.
    public func waitWithOutput(
        execID: String = "",
        output: @escaping @Sendable (SandboxOutput, [UInt8]) -> Void
    ) async throws -> SandboxExit {
        try await Sandbox.waitForProcess(client, id: id, execID: execID, output: output)
    }

    /// The next chunk of a process's output, for a plain OS thread (it blocks until there is
    /// some or the stream has ended). Read each stream to its end: the process's exit is only
    /// reported once both are drained.
    public func readOutputBlocking(execID: String, _ which: SandboxOutput) throws -> (bytes: [UInt8], ended: Bool) {
        let request = AgentReadOutputRequest.with { $0.process = reference(execID) }
        let chunk = which == .stdout ? try client.readStdoutBlocking(request) : try client.readStderrBlocking(request)
        return ([UInt8](chunk.data), chunk.eof)
    }

    /// Waits for a process's exit (after both its outputs were read to their ends).
    public func wait(execID: String = "") async throws -> SandboxExit {
        SandboxExit(try await client.waitProcess(.with { $0.process = reference(execID) }))
    }

    /// Sends `signal` to one process, or with `all` to every process of the container.
    public func signal(_ signal: Int32, execID: String = "", all: Bool = false) async throws {
        _ = try await client.signalProcess(
            .with {
                $0.process = reference(execID)
                $0.signal = signal
                $0.allProcesses = all
            }, timeout: .seconds(5))
    }

    /// Changes the size of a process's terminal.
    public func resize(execID: String = "", to size: WindowSize) async throws {
        _ = try await client.resizeTerminal(
            .with {
                $0.process = reference(execID)
                $0.size = AgentWindowSize(size)
            }, timeout: .seconds(5))
    }

    /// The writer of a process's stdin is done: what its pump holds still goes in, then the
    /// process reads end of file.
    public func closeStdin(execID: String = "") async throws {
        if pumps.finish(execID: execID) { return }
        _ = try await client.closeStdin(.with { $0.process = reference(execID) }, timeout: .seconds(10))
    }

    /// The process is gone and forgotten: its stdin pump (if any) stops.
    public func forgetProcess(execID: String) {
        pumps.remove(execID: execID)
    }

    /// Resource use inside the guest.
    public func guestStats() async throws -> AgentStatsResponse {
        try await client.stats(.with { $0.containerID = id }, timeout: .seconds(5))
    }

    private func reference(_ execID: String) -> AgentProcessRef {
        .with {
            $0.containerID = id
            $0.execID = execID
        }
    }

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

    /// Whether the VM has a balloon (cold boots do; templates' clones do not).
    public var hasBalloon: Bool { machine.balloon != nil }

    /// MiB the guest says it has given into its balloon (0 without one).
    public var balloonMiB: Int { Int(machine.balloon?.reportedBalloonPages ?? 0) / Self.balloonPagesPerMiB }

    /// Asks the guest to give `mebibytes` of its memory back to the host through its balloon
    /// (0: take none, giving back what it holds). The guest does it when it can, and takes pages
    /// back on its own under memory pressure (the balloon deflates on OOM).
    public func setBalloon(mebibytes: Int) throws {
        guard let balloon = machine.balloon else { throw SandboxError("the sandbox's VM has no balloon (a template's clone)") }
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
