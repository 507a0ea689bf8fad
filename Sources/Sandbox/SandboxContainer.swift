import AgentProtocol
import HostOS
import TTRPC

/// One container in a running sandbox: the sandbox's first (`RunningSandbox.main`), or a pod's
/// later one (`RunningSandbox.addContainer`). Its main process (exec id "") is started with
/// `start`, more with `exec`; each is waited for, signalled, resized and fed stdin by exec id.
public final class SandboxContainer: Sendable {
    public let id: String
    public let hasTerminal: Bool
    let mainProcess: AgentProcessSpec
    let client: AgentClient
    /// The sandbox's control, which learns of the first container's start (signals sent before
    /// it are delivered then); nil for a pod's later containers.
    let control: SandboxControl?
    let phases: SandboxPhaseRecorder?
    let pumps: SandboxStdinPumps
    /// How long StartProcess and ExecProcess may take (`Sandbox.controlCallTimeout`).
    let controlTimeout: Duration
    /// The pod slot whose drives hold its image and writable layer (nil: the first container).
    let slot: Int?
    /// What must stay open while the container exists (a throwaway root's only reference).
    let keepOpen: FileDescriptor?

    init(
        id: String, hasTerminal: Bool, mainProcess: AgentProcessSpec, client: AgentClient, control: SandboxControl?,
        phases: SandboxPhaseRecorder?, pumps: SandboxStdinPumps, controlTimeout: Duration, slot: Int? = nil,
        keepOpen: FileDescriptor? = nil
    ) {
        self.id = id
        self.hasTerminal = hasTerminal
        self.mainProcess = mainProcess
        self.client = client
        self.control = control
        self.phases = phases
        self.pumps = pumps
        self.controlTimeout = controlTimeout
        self.slot = slot
        self.keepOpen = keepOpen
    }

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
        control?.started(client: client, containerID: id, hasTerminal: hasTerminal)
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
        pumps.start(try SandboxStdin(input: input, client: client, process: reference(execID)), process: pumpKey(execID))
    }

    /// A process's stdout and stderr, streamed concurrently to their ends, then its exit.
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
        if pumps.finish(process: pumpKey(execID)) { return }
        _ = try await client.closeStdin(.with { $0.process = reference(execID) }, timeout: .seconds(10))
    }

    /// The process is gone and forgotten: its stdin pump (if any) stops.
    public func forgetProcess(execID: String) {
        pumps.remove(process: pumpKey(execID))
    }

    /// Resource use inside the guest: the container's own cgroup when it has one (a pod's
    /// containers), else the whole guest.
    public func guestStats() async throws -> AgentStatsResponse {
        try await client.stats(.with { $0.containerID = id }, timeout: .seconds(5))
    }

    /// Writes back and drops the guest's page cache and reclaimable slab (the whole guest's).
    public func dropGuestCaches() async throws -> AgentDropCachesResponse {
        try await client.dropCaches(timeout: .seconds(30))
    }

    /// Changes the memory limit of the container's own cgroup in the guest (a pod's containers;
    /// 0: none but the VM's size).
    public func updateMemoryLimit(bytes: UInt64) async throws {
        _ = try await client.updateContainer(
            .with {
                $0.containerID = id
                $0.memoryLimitBytes = bytes
            }, timeout: .seconds(5))
    }

    private func reference(_ execID: String) -> AgentProcessRef {
        .with {
            $0.containerID = id
            $0.execID = execID
        }
    }

    private func pumpKey(_ execID: String) -> String { id + "/" + execID }
}
