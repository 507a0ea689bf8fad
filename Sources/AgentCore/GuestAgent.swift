#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import CLinux
import FoundationEssentials  // Data: SwiftProtobuf's type for bytes fields
import HostOS
import Logging
import Synchronization
import TTRPC

/// The agent API served inside the guest. Processes of a container made by CreateContainer run
/// in its overlay rootfs and namespaces; for any other container id they run directly in the
/// guest's root (the id then only groups processes).
public final class GuestAgent: AgentService {
    private let table: ProcessTable
    private let containers = Mutex<[String: ContainerRoot]>([:])
    private let network = GuestNetworkSetup()
    private let runRoot: String
    private let logger: Logger
    /// Ends the VM (PID 1: sync and power off); called after Shutdown has been answered.
    private let powerOff: @Sendable () -> Void

    static let maxStdinChunk = 1 << 20

    /// `runRoot` is where container rootfs trees are mounted (one directory per container).
    public init(
        table: ProcessTable, runRoot: String = "/run/rund", logger: Logger = Logger(label: "rund.agent"),
        powerOff: @escaping @Sendable () -> Void
    ) {
        self.table = table
        self.runRoot = runRoot
        self.logger = logger
        self.powerOff = powerOff
    }

    public func createContainer(
        _ request: AgentCreateContainerRequest, context: TTRPCCallContext
    ) async throws -> AgentCreateContainerResponse {
        let id = try Self.key(request.containerID, "").containerID
        let plan = try RootfsPlan(containerID: id, layout: request.rootfs, runRoot: runRoot)
        guard request.hostname.utf8.count <= 64, !request.hostname.utf8.contains(0) else {
            throw TTRPCStatus(.invalidArgument, "hostname must be at most 64 bytes")
        }
        var root = ContainerRoot(id: id, plan: plan, hostname: request.hostname)
        // The name /etc/hosts gives the container's address: a pod's member has its pod's.
        var hostsName = request.hostname
        if !request.shareNamespacesWith.isEmpty {
            let other = try Self.key(request.shareNamespacesWith, "").containerID
            guard let shared = containers.withLock({ $0[other] }) else {
                throw TTRPCStatus(.notFound, "container \(other), whose namespaces \(id) would share, does not exist")
            }
            root.sharesNamespacesWith = other
            if hostsName.isEmpty { hostsName = shared.hostname }
        }
        let networkPlan = request.hasNetwork ? try GuestNetworkPlan(request.network) : nil
        if networkPlan != nil { try ContainerNetworkFiles.checkHostname(hostsName) }
        try network.checkSameAsApplied(networkPlan)
        if request.hasIdentity { try GuestIdentity.apply(request.identity) }
        // Claim the id first so two concurrent creates cannot both mount.
        let claimed = containers.withLock { containers -> Bool in
            guard containers[id] == nil else { return false }
            containers[id] = root
            return true
        }
        guard claimed else { throw TTRPCStatus(.alreadyExists, "container \(id) already exists") }
        do {
            if request.ownCgroup || request.memoryLimitBytes > 0 {
                root.cgroup = try ContainerCgroup.make(containerID: id, memoryLimitBytes: request.memoryLimitBytes)
            }
            let guestNetwork = try network.configure(networkPlan)
            try ContainerRoot.mount(id: id, plan: plan, hostname: request.hostname)
            if let guestNetwork {
                do {
                    try ContainerNetworkFiles.write(guestNetwork, hostname: hostsName, root: plan.rootfs)
                } catch {
                    root.unmount()
                    throw error
                }
            }
            containers.withLock { [root] in $0[id] = root }
        } catch {
            root.cgroup?.remove()
            _ = containers.withLock { $0.removeValue(forKey: id) }
            throw error
        }
        logger.info("created container", metadata: ["container": "\(id)", "rootfs": "\(plan.rootfs)"])
        return .with { $0.rootfsPath = plan.rootfs }
    }

    public func startProcess(_ request: AgentStartProcessRequest, context: TTRPCCallContext) async throws -> AgentStartProcessResponse {
        let key = try Self.key(request.containerID, "")
        return try start(key, request.process)
    }

    public func execProcess(_ request: AgentExecProcessRequest, context: TTRPCCallContext) async throws -> AgentStartProcessResponse {
        guard !request.execID.isEmpty else {
            throw TTRPCStatus(.invalidArgument, "exec_id must not be empty (\"\" names the main process: use StartProcess)")
        }
        let key = try Self.key(request.containerID, request.execID)
        return try start(key, request.process)
    }

    public func writeStdin(_ request: AgentWriteStdinRequest, context: TTRPCCallContext) async throws -> AgentWriteStdinResponse {
        guard request.data.count <= Self.maxStdinChunk else {
            throw TTRPCStatus(.invalidArgument, "stdin chunk of \(request.data.count) bytes is over the 1 MiB limit: split it")
        }
        let process = try process(request.process)
        do {
            let written = try await process.writeStdin(Array(request.data))
            return .with { $0.written = UInt32(written) }
        } catch is GuestProcess.StdinClosed {
            throw TTRPCStatus(.failedPrecondition, "stdin of \(process.key) is closed or was not opened (set open_stdin)")
        }
    }

    public func closeStdin(_ request: AgentCloseStdinRequest, context: TTRPCCallContext) async throws -> AgentCloseStdinResponse {
        try await process(request.process).closeStdin()
        return AgentCloseStdinResponse()
    }

    public func readStdout(_ request: AgentReadOutputRequest, context: TTRPCCallContext) async throws -> AgentReadOutputResponse {
        try await read(request, \.stdout)
    }

    public func readStderr(_ request: AgentReadOutputRequest, context: TTRPCCallContext) async throws -> AgentReadOutputResponse {
        try await read(request, \.stderr)
    }

    public func waitProcess(_ request: AgentWaitProcessRequest, context: TTRPCCallContext) async throws -> AgentWaitProcessResponse {
        let process = try process(request.process)
        let status = try await process.waitForExit()
        table.retireIfFinished(process.key)
        return .with {
            $0.exitCode = status.code
            $0.signal = status.signal
            $0.oomKilled = process.oomKillSinceStart
        }
    }

    public func signalProcess(_ request: AgentSignalProcessRequest, context: TTRPCCallContext) async throws -> AgentSignalProcessResponse {
        guard (1..<65).contains(request.signal) else {
            throw TTRPCStatus(.invalidArgument, "signal \(request.signal) is not a signal number (1-64)")
        }
        let named = try process(request.process)
        let targets = request.allProcesses ? table.processes(inContainer: named.key.containerID) : [named]
        for target in targets {
            do {
                try target.signal(request.signal)
            } catch {
                throw TTRPCStatus(.internal, "signal \(request.signal) to \(target.key): \(error)")
            }
        }
        return AgentSignalProcessResponse()
    }

    public func resizeTerminal(_ request: AgentResizeTerminalRequest, context: TTRPCCallContext) async throws -> AgentResizeTerminalResponse
    {
        let process = try process(request.process)
        let size = try TerminalSize(request.size)
        guard let terminal = process.terminal else {
            throw TTRPCStatus(.failedPrecondition, "\(process.key) has no terminal (it was started with pipes)")
        }
        guard rund_set_window_size(terminal.rawValue, size.rows, size.columns, size.width, size.height) == 0 else {
            throw TTRPCStatus(.internal, "resize the terminal of \(process.key): \(SystemError.last("ioctl TIOCSWINSZ"))")
        }
        return AgentResizeTerminalResponse()
    }

    /// A container with a cgroup of its own reports that cgroup; any other id the whole guest.
    public func stats(_ request: AgentStatsRequest, context: TTRPCCallContext) async throws -> AgentStatsResponse {
        if let cgroup = containers.withLock({ $0[request.containerID]?.cgroup }) { return cgroup.stats() }
        return GuestStats.collect()
    }

    /// Sets the memory limit of a container's own cgroup.
    public func updateContainer(
        _ request: AgentUpdateContainerRequest, context: TTRPCCallContext
    ) async throws -> AgentUpdateContainerResponse {
        let (id, container) = try existingContainer(request.containerID)
        guard let cgroup = container.cgroup else {
            throw TTRPCStatus(.failedPrecondition, "container \(id) has no cgroup of its own: its limit is the VM's size")
        }
        try cgroup.setMemoryLimit(bytes: request.memoryLimitBytes)
        return AgentUpdateContainerResponse()
    }

    /// Kills the container's processes, waits (up to 5 s) for them to go, unmounts its rootfs
    /// and forgets it with its processes: its drives are free for the host to take back.
    public func removeContainer(
        _ request: AgentRemoveContainerRequest, context: TTRPCCallContext
    ) async throws -> AgentRemoveContainerResponse {
        let (id, container) = try existingContainer(request.containerID)
        let processes = table.processes(inContainer: id)
        for process in processes { try? process.signal(SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(5)
        while processes.contains(where: { $0.exitStatus == nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        container.unmount()
        container.cgroup?.remove()
        table.forget(containerID: id)
        _ = containers.withLock { $0.removeValue(forKey: id) }
        logger.info("removed container", metadata: ["container": "\(id)"])
        return AgentRemoveContainerResponse()
    }

    /// Writes back and drops the guest's caches on a thread of its own: writing back may take a
    /// while, and the agent's other calls (output long-polls) must go on meanwhile.
    public func dropCaches(_ request: AgentDropCachesRequest, context: TTRPCCallContext) async throws -> AgentDropCachesResponse {
        do {
            return try await Offload.run(name: "drop-caches") { try PageCacheDrop.run() }
        } catch {
            throw TTRPCStatus(.internal, "drop caches: \(error)")
        }
    }

    /// Kills every process, then (once the answer had time to leave) unmounts the containers'
    /// filesystems and powers off.
    public func shutdown(_ request: AgentShutdownRequest, context: TTRPCCallContext) async throws -> AgentShutdownResponse {
        logger.info("shutdown requested")
        for process in table.allProcesses() { try? process.signal(SIGKILL) }
        let powerOff = self.powerOff
        let containers = self.containers.withLock { Array($0.values) }
        try DetachedThread.start(name: "power-off") {
            usleep(200_000)
            // Overlay first, then the filesystems under it; detached, as a killed process may
            // not be gone yet. powerOff syncs what is still mounted.
            for container in containers { container.unmount() }
            powerOff()
        }
        return AgentShutdownResponse()
    }

    // MARK: helpers

    private func start(_ key: ProcessKey, _ spec: AgentProcessSpec) throws -> AgentStartProcessResponse {
        let place: SpawnPlace
        let plan: LaunchPlan
        if let container = containers.withLock({ $0[key.containerID] }) {
            plan = try LaunchPlan(spec, isExecutable: container.isExecutable)
            if key.execID.isEmpty {
                var sharingWith: pid_t?
                if let other = container.sharesNamespacesWith {
                    let main = try? table.process(ProcessKey(containerID: other, execID: ""))
                    guard let main, main.exitStatus == nil else {
                        throw TTRPCStatus(
                            .failedPrecondition,
                            "container \(other), whose namespaces \(key.containerID) shares, has no running main process")
                    }
                    sharingWith = main.pid
                }
                place = .newContainer(container, sharingWith: sharingWith)
            } else {
                let main = try? table.process(ProcessKey(containerID: key.containerID, execID: ""))
                guard let main, main.exitStatus == nil else {
                    throw TTRPCStatus(
                        .failedPrecondition, "container \(key.containerID) has no running main process to exec beside: StartProcess first")
                }
                place = .joining(container, mainPID: main.pid)
            }
        } else {
            plan = try LaunchPlan(spec)
            place = .guestRoot
        }
        let process = try table.start(key, plan, in: place)
        logger.info("started process", metadata: ["process": "\(key)", "pid": "\(process.pid)", "program": "\(plan.executable)"])
        return .with { $0.pid = UInt32(process.pid) }
    }

    /// A container CreateContainer made: its checked id and root, or NOT_FOUND.
    private func existingContainer(_ rawID: String) throws(TTRPCStatus) -> (String, ContainerRoot) {
        let id = try Self.key(rawID, "").containerID
        guard let container = containers.withLock({ $0[id] }) else {
            throw TTRPCStatus(.notFound, "container \(id) does not exist")
        }
        return (id, container)
    }

    private func process(_ ref: AgentProcessRef) throws(TTRPCStatus) -> GuestProcess {
        try table.process(try Self.key(ref.containerID, ref.execID))
    }

    private func read(
        _ request: AgentReadOutputRequest, _ stream: KeyPath<GuestProcess, ProcessOutput>
    ) async throws -> AgentReadOutputResponse {
        let process = try process(request.process)
        let chunk = try await process[keyPath: stream].read(maxBytes: request.maxBytes)
        if chunk.eof { table.retireIfFinished(process.key) }
        return .with {
            $0.data = Data(chunk.data)
            $0.eof = chunk.eof
        }
    }

    /// Container ids follow the proto's rule: [A-Za-z0-9_.-], 1 to 64 characters (exec ids too).
    static func key(_ containerID: String, _ execID: String) throws(TTRPCStatus) -> ProcessKey {
        guard isValidID(containerID) else {
            throw TTRPCStatus(.invalidArgument, "container id \"\(containerID)\" must be 1-64 characters of [A-Za-z0-9_.-]")
        }
        guard execID.isEmpty || isValidID(execID) else {
            throw TTRPCStatus(.invalidArgument, "exec id \"\(execID)\" must be 1-64 characters of [A-Za-z0-9_.-]")
        }
        return ProcessKey(containerID: containerID, execID: execID)
    }

    static func isValidID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a)
                    || byte == 0x5f || byte == 0x2e || byte == 0x2d
            }
    }
}
