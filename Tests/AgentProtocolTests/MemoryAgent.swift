import AgentProtocol
import TTRPC

/// A complete in-memory implementation of the agent API: the server-side peer the client is
/// tested against (the real agent runs processes in a guest; this one "runs" a cat-like program
/// that copies stdin to stdout, writes its argv to stderr, and exits with argc on end of input).
actor MemoryAgent: AgentService {
    struct Process {
        var spec: AgentProcessSpec
        var pid: UInt32
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var stdinClosed = false
        var exit: AgentWaitProcessResponse?
        var windowSize: AgentWindowSize?
    }

    private(set) var containers: [String: AgentCreateContainerRequest] = [:]
    private var processes: [String: Process] = [:]
    private var nextPID: UInt32 = 100
    private var changed: [CheckedContinuation<Void, Never>] = []
    private(set) var isShutDown = false

    private func key(_ ref: AgentProcessRef) -> String { "\(ref.containerID)/\(ref.execID)" }

    private func notify() {
        let waiting = changed
        changed = []
        for continuation in waiting { continuation.resume() }
    }

    private func nextChange() async {
        await withCheckedContinuation { changed.append($0) }
    }

    private func process(_ ref: AgentProcessRef) throws -> Process {
        guard let process = processes[key(ref)] else {
            throw TTRPCStatus(.notFound, "process \(ref.execID.isEmpty ? "(main)" : ref.execID) of container \(ref.containerID) not found")
        }
        return process
    }

    private func update(_ ref: AgentProcessRef, _ body: (inout Process) throws -> Void) throws {
        var process = try process(ref)
        try body(&process)
        processes[key(ref)] = process
        notify()
    }

    private func launch(container: String, exec: String, spec: AgentProcessSpec) throws -> AgentStartProcessResponse {
        guard containers[container] != nil else { throw TTRPCStatus(.notFound, "container \(container) not found") }
        guard !spec.args.isEmpty else { throw TTRPCStatus(.invalidArgument, "args must not be empty") }
        let ref = AgentProcessRef.with {
            $0.containerID = container; $0.execID = exec
        }
        guard processes[key(ref)] == nil else {
            throw TTRPCStatus(exec.isEmpty ? .failedPrecondition : .alreadyExists, "process \(key(ref)) already started")
        }
        nextPID += 1
        var process = Process(spec: spec, pid: nextPID)
        if spec.hasTerminal {
            process.windowSize = spec.terminal.size
        } else {
            process.stderr = Array(spec.args.joined(separator: " ").utf8)
        }
        if !spec.openStdin { process.stdinClosed = true }
        processes[key(ref)] = process
        if process.stdinClosed { try finish(ref, signal: 0) }
        return .with { $0.pid = nextPID }
    }

    private func finish(_ ref: AgentProcessRef, signal: Int32) throws {
        try update(ref) { process in
            guard process.exit == nil else { return }
            process.stdinClosed = true
            process.exit = .with {
                if signal == 0 { $0.exitCode = Int32(process.spec.args.count) } else { $0.signal = signal }
            }
        }
    }

    private func read(_ request: AgentReadOutputRequest, stderr: Bool) async throws -> AgentReadOutputResponse {
        while true {
            var process = try process(request.process)
            let available = stderr ? process.stderr : process.stdout
            if !available.isEmpty {
                let count = min(available.count, request.maxBytes == 0 ? 65536 : Int(request.maxBytes))
                let chunk = Array(available.prefix(count))
                if stderr { process.stderr.removeFirst(count) } else { process.stdout.removeFirst(count) }
                processes[key(request.process)] = process
                return .with { $0.data = .init(chunk) }
            }
            if process.exit != nil { return .with { $0.eof = true } }
            await nextChange()
        }
    }

    func createContainer(_ request: AgentCreateContainerRequest, context: TTRPCCallContext) async throws -> AgentCreateContainerResponse {
        guard !request.containerID.isEmpty else { throw TTRPCStatus(.invalidArgument, "container_id is empty") }
        guard containers[request.containerID] == nil else {
            throw TTRPCStatus(.alreadyExists, "container \(request.containerID) exists")
        }
        guard request.rootfs.image.fsType == "erofs", request.rootfs.writable.fsType == "ext4" else {
            throw TTRPCStatus(.invalidArgument, "rootfs needs an erofs image and an ext4 writable device")
        }
        containers[request.containerID] = request
        return .with { $0.rootfsPath = "/run/rund/\(request.containerID)/rootfs" }
    }

    func startProcess(_ request: AgentStartProcessRequest, context: TTRPCCallContext) async throws -> AgentStartProcessResponse {
        try launch(container: request.containerID, exec: "", spec: request.process)
    }

    func execProcess(_ request: AgentExecProcessRequest, context: TTRPCCallContext) async throws -> AgentStartProcessResponse {
        guard !request.execID.isEmpty else { throw TTRPCStatus(.invalidArgument, "exec_id is empty") }
        return try launch(container: request.containerID, exec: request.execID, spec: request.process)
    }

    func writeStdin(_ request: AgentWriteStdinRequest, context: TTRPCCallContext) async throws -> AgentWriteStdinResponse {
        var written = 0
        try update(request.process) { process in
            guard !process.stdinClosed else { return }
            process.stdout += request.data
            written = request.data.count
        }
        return .with { $0.written = UInt32(written) }
    }

    func closeStdin(_ request: AgentCloseStdinRequest, context: TTRPCCallContext) async throws -> AgentCloseStdinResponse {
        try finish(request.process, signal: 0)
        return .init()
    }

    func readStdout(_ request: AgentReadOutputRequest, context: TTRPCCallContext) async throws -> AgentReadOutputResponse {
        try await read(request, stderr: false)
    }

    func readStderr(_ request: AgentReadOutputRequest, context: TTRPCCallContext) async throws -> AgentReadOutputResponse {
        try await read(request, stderr: true)
    }

    func waitProcess(_ request: AgentWaitProcessRequest, context: TTRPCCallContext) async throws -> AgentWaitProcessResponse {
        while true {
            if let exit = try process(request.process).exit { return exit }
            await nextChange()
        }
    }

    func signalProcess(_ request: AgentSignalProcessRequest, context: TTRPCCallContext) async throws -> AgentSignalProcessResponse {
        let targets =
            request.allProcesses
            ? processes.keys.filter { $0.hasPrefix(request.process.containerID + "/") }.map { key in
                AgentProcessRef.with {
                    $0.containerID = request.process.containerID;
                    $0.execID = String(key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)[1])
                }
            }
            : [request.process]
        for target in targets { try finish(target, signal: request.signal) }
        return .init()
    }

    func resizeTerminal(_ request: AgentResizeTerminalRequest, context: TTRPCCallContext) async throws -> AgentResizeTerminalResponse {
        try update(request.process) { process in
            guard process.spec.hasTerminal else { throw TTRPCStatus(.failedPrecondition, "process has no terminal") }
            process.windowSize = request.size
        }
        return .init()
    }

    func windowSize(_ ref: AgentProcessRef) throws -> AgentWindowSize? { try process(ref).windowSize }

    func stats(_ request: AgentStatsRequest, context: TTRPCCallContext) async throws -> AgentStatsResponse {
        guard containers[request.containerID] != nil else { throw TTRPCStatus(.notFound, "container \(request.containerID) not found") }
        let running = processes.filter { $0.key.hasPrefix(request.containerID + "/") && $0.value.exit == nil }.count
        return .with {
            $0.pids.current = UInt64(running)
            $0.memory.usageBytes = UInt64(running) << 20
            $0.cpu.usageNanos = 1
        }
    }

    func removeContainer(_ request: AgentRemoveContainerRequest, context: TTRPCCallContext) async throws -> AgentRemoveContainerResponse {
        guard containers.removeValue(forKey: request.containerID) != nil else {
            throw TTRPCStatus(.notFound, "container \(request.containerID) not found")
        }
        for key in processes.keys where key.hasPrefix(request.containerID + "/") { processes.removeValue(forKey: key) }
        return AgentRemoveContainerResponse()
    }

    func updateContainer(_ request: AgentUpdateContainerRequest, context: TTRPCCallContext) async throws -> AgentUpdateContainerResponse {
        guard containers[request.containerID] != nil else { throw TTRPCStatus(.notFound, "container \(request.containerID) not found") }
        return AgentUpdateContainerResponse()
    }

    /// A memory agent has no page cache: it answers what it was told to.
    var cachedBytes: UInt64 = 0
    func setCachedBytes(_ bytes: UInt64) { cachedBytes = bytes }
    func dropCaches(_ request: AgentDropCachesRequest, context: TTRPCCallContext) async throws -> AgentDropCachesResponse {
        defer { cachedBytes = 0 }
        return .with { $0.cachedBytesBefore = cachedBytes }
    }

    func shutdown(_ request: AgentShutdownRequest, context: TTRPCCallContext) async throws -> AgentShutdownResponse {
        for key in processes.keys where processes[key]?.exit == nil {
            let parts = key.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            try finish(
                .with {
                    $0.containerID = String(parts[0]); $0.execID = String(parts[1])
                }, signal: 9)
        }
        isShutDown = true
        return .init()
    }
}
