#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import FoundationEssentials
import HostOS
import KVM
import Logging
import Network
import Sandbox
import Storage
import SwiftProtobuf
import Synchronization
import TTRPC
import VMM

/// containerd's `containerd.task.v2.Task` service for one shim: one sandbox (a microVM in this
/// process) per task. State lives on the host, so State, Wait and Connect never wait on the
/// guest; blocking work runs on OS threads or the guest agent's own calls.
final class TaskService: Sendable {
    static let service = "containerd.task.v2.Task"

    let namespace: String
    let publisher: EventPublisher
    let logger: Logger
    let shimPID = UInt32(getpid())
    /// Called once the shim may exit (Shutdown with no task left).
    let onShutdown: @Sendable () -> Void

    private struct State {
        var tasks: [String: ShimTask] = [:]
        /// Ids whose Create is under way.
        var creating: Set<String> = []
        var shuttingDown = false
    }
    private let state = Mutex(State())

    init(namespace: String, publisher: EventPublisher, logger: Logger, onShutdown: @escaping @Sendable () -> Void) {
        self.namespace = namespace
        self.publisher = publisher
        self.logger = logger
        self.onShutdown = onShutdown
    }

    /// True while a task exists or is being created.
    var isBusy: Bool { state.withLock { !$0.tasks.isEmpty || !$0.creating.isEmpty } }

    /// Marks the shim as leaving if it has nothing to do, so no Create starts while it goes.
    /// False (and nothing changed) when a task exists or is being created.
    func leaveIfIdle() -> Bool {
        state.withLock { state in
            guard state.tasks.isEmpty, state.creating.isEmpty else { return false }
            state.shuttingDown = true
            return true
        }
    }

    func register(on server: TTRPCServer) {
        handle(server, "State", state)
        handle(server, "Create", create)
        handle(server, "Start", start)
        handle(server, "Delete", delete)
        handle(server, "Pids", pids)
        handle(server, "Pause", pause)
        handle(server, "Resume", resume)
        handle(server, "Checkpoint", checkpoint)
        handle(server, "Kill", kill)
        handle(server, "Exec", exec)
        handle(server, "ResizePty", resizePty)
        handle(server, "CloseIO", closeIO)
        handle(server, "Update", update)
        handle(server, "Wait", wait)
        handle(server, "Stats", stats)
        handle(server, "Connect", connect)
        handle(server, "Shutdown", shutdown)
    }

    private func handle<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ server: TTRPCServer, _ method: String, _ body: @escaping @Sendable (Request) async throws -> Response
    ) {
        let logger = self.logger
        server.register(service: Self.service, method: method) { (request: Request, _: TTRPCCallContext) async throws -> Response in
            do {
                return try await body(request)
            } catch {
                let status = TTRPCStatus(shimError: error)
                if status.code != .notFound { logger.warning("\(method) failed: \(status.message)") }
                throw status
            }
        }
    }

    func task(_ id: String) throws -> ShimTask {
        guard let task = state.withLock({ $0.tasks[id] }) else { throw ShimError.notFound("container \(id) not created") }
        return task
    }

    // MARK: create and start

    func create(_ request: Containerd_Task_V2_CreateTaskRequest) async throws -> Containerd_Task_V2_CreateTaskResponse {
        guard request.checkpoint.isEmpty && request.parentCheckpoint.isEmpty else {
            throw ShimError(.unimplemented, "rund cannot restore a sandbox from a checkpoint")
        }
        let plan = try BundleSpec.load(bundle: request.bundle)
        let podSandbox = try self.state.withLock { state -> ShimTask? in
            guard !state.shuttingDown else { throw ShimError(.failedPrecondition, "the shim is shutting down") }
            guard state.tasks[request.id] == nil, !state.creating.contains(request.id) else {
                throw ShimError(.alreadyExists, "container \(request.id) already exists")
            }
            var podSandbox: ShimTask?
            if case .podMember(let sandboxID) = plan.podRole {
                // A pod's container goes into the VM its sandbox container made.
                guard let sandbox = state.tasks[sandboxID], !sandbox.isPodMember else {
                    throw ShimError(
                        .failedPrecondition, "container \(request.id) belongs to pod sandbox \(sandboxID), which this shim does not run")
                }
                guard sandbox.sandbox.containerSlots > 0 else {
                    throw ShimError(
                        .failedPrecondition,
                        "pod sandbox \(sandboxID) was made with pod_container_slots = 0: container \(request.id) cannot join its VM")
                }
                podSandbox = sandbox
            } else {
                // One VM per shim: a pod's, or a single container's.
                guard state.tasks.isEmpty, state.creating.isEmpty else {
                    throw ShimError(
                        .failedPrecondition,
                        "this shim already runs the sandbox of \(state.tasks.keys.first ?? "another container"): container \(request.id) is not of its pod"
                    )
                }
            }
            state.creating.insert(request.id)
            return podSandbox
        }
        defer { _ = state.withLock { $0.creating.remove(request.id) } }

        let configuration = try ShimConfiguration.load(options: request.hasOptions ? request.options : nil)
        if KVMHostProbe.flavor() == .pvm {
            throw ShimError(
                .failedPrecondition,
                "this host's /dev/kvm is PVM, which cannot boot the sandbox's guest kernel: rund needs KVM on hardware virtualization"
            )
        }
        let io = try ProcessIO(stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal)
        var opened = true
        defer { if opened { io.close() } }

        let sandboxID = ShimNames.sandboxID(namespace: namespace, id: request.id)
        let root: SandboxRoot
        switch try RootfsSource.parse(request.rootfs, bundle: request.bundle) {
        case .layers(let lowers):
            root = .erofs(try LayerChainImages(root: configuration.root, logger: logger).image(lowers: lowers))
        case .directory(let directory):
            root = .directory(directory)
        }
        var process = plan.process
        process.openStdin = io.stdin != nil
        let terminalSize = plan.terminalSize ?? .fallback
        if request.terminal { process.terminal = .with { $0.size = AgentWindowSize(terminalSize) } }
        if let podSandbox {
            let container = try await podSandbox.sandbox.addContainer(
                PodContainerSpec(
                    id: sandboxID, root: root, process: process, writableSizeMiB: configuration.writableMiB,
                    memoryLimitBytes: UInt64(clamping: max(plan.memoryLimitBytes ?? 0, 0))))
            let task = ShimTask(
                id: request.id, bundle: request.bundle, rootfs: request.rootfs, sandbox: podSandbox.sandbox, container: container,
                main: TaskProcess(execID: "", io: io))
            opened = false
            state.withLock { $0.tasks[request.id] = task }
            emit(task) { $0.created() }
            logger.info("created in pod", metadata: ["id": "\(request.id)", "pod": "\(podSandbox.id)"])
            return .with { $0.pid = shimPID }
        }
        let sizing = PodSizing(plan: plan, configuration: configuration)
        var spec = SandboxSpec(
            id: sandboxID, root: root, memoryMiB: sizing.memoryMiB,
            vcpuCount: sizing.vcpus, writableSizeMiB: configuration.writableMiB,
            consolePath: configuration.consoleDirectory.map { "\($0)/\(sandboxID).log" },
            interactive: io.stdin != nil, terminal: request.terminal ? terminalSize : nil,
            stallTimeout: configuration.stallTimeoutSeconds.map { .milliseconds(Int64($0 * 1000)) })
        spec.hostname = plan.hostname ?? String(request.id.prefix(63))
        spec.process = process
        if plan.podRole == .podSandbox { spec.containerSlots = configuration.podContainerSlots }
        if let namespace = plan.networkNamespace { spec.network = .namespace(namespace) }
        guard spec.vcpuCount <= VMConfiguration.maxVCPUs else {
            throw ShimError(
                .invalidArgument,
                "the CPU quota asks for \(spec.vcpuCount) vCPUs, more than the \(VMConfiguration.maxVCPUs) a sandbox can have")
        }
        let sandbox = try await Sandbox(
            stateRoot: configuration.root, agentPath: configuration.agent, soleSandboxInProcess: true,
            allowUnconfined: configuration.allowUnconfined, logger: logger
        ).create(spec)
        if let quota = plan.cpuQuotaMicros {
            do {
                try sandbox.updateCPU(quotaMicros: quota, periodMicros: plan.cpuPeriodMicros)
            } catch {
                sandbox.release()
                throw ShimError(.invalidArgument, "cannot apply the CPU quota: \(error)")
            }
        }
        let task = ShimTask(
            id: request.id, bundle: request.bundle, rootfs: request.rootfs, sandbox: sandbox,
            main: TaskProcess(execID: "", io: io))
        opened = false
        state.withLock { $0.tasks[request.id] = task }
        emit(task) { $0.created() }
        logger.info(
            "created",
            metadata: ["id": "\(request.id)", "sandbox": "\(sandboxID)", "memoryMiB": "\(spec.memoryMiB)", "vcpus": "\(spec.vcpuCount)"])
        return .with { $0.pid = shimPID }
    }

    func start(_ request: Containerd_Task_V2_StartRequest) async throws -> Containerd_Task_V2_StartResponse {
        let task = try task(request.id)
        let process = try task.process(request.execID)
        guard process.markStarting() else {
            throw ShimError(
                .failedPrecondition, "cannot start a process that is \(process.snapshot.status == .stopped ? "stopped" : "already running")"
            )
        }
        let guestPID: UInt32
        do {
            let input = process.io.stdin?.rawValue
            if let spec = process.spec {
                guestPID = try await task.container.exec(process.execID, process: spec, stdin: input)
            } else {
                guestPID = try await task.container.start(stdin: input)
            }
            try process.io.startCopying(from: task.container, execID: process.execID, logger: logger)
        } catch {
            let explained = await task.sandbox.explain(error)
            process.recordExit(ExitRecord(status: 255, at: .now()))
            if !process.execID.isEmpty { emit(task) { $0.execGone(process.execID) } }
            throw ShimError("cannot start the process: \(explained)")
        }
        process.update { $0.guestPID = guestPID }
        emit(task) { $0.started(process.execID) }
        watch(task, process)
        return .with { $0.pid = shimPID }
    }

    /// Waits for the process's end on the agent, then (its output delivered and its FIFOs
    /// closed) records the exit and publishes it in order.
    private func watch(_ task: ShimTask, _ process: TaskProcess) {
        let logger = self.logger
        Task {
            var status: UInt32
            var oom = false
            do {
                let exit = try await task.container.wait(execID: process.execID)
                status = UInt32(truncatingIfNeeded: exit.status)
                oom = exit.diedOfMemoryExhaustion
            } catch {
                if let stop = task.sandbox.control.stopped {
                    status = UInt32(128 + stop.signal)
                } else {
                    // The guest died (panic, crash) or broke the connection: an exit all the same.
                    status = 255
                    let explained = await task.sandbox.explain(error)
                    logger.error("lost the process \(process.execID.isEmpty ? task.id : process.execID): \(explained)")
                }
            }
            if !(await process.io.waitDrained(within: .seconds(10))) {
                logger.warning("output of \(process.execID.isEmpty ? task.id : process.execID) was not drained within 10 s")
            }
            _ = process.io.closeOutputs()
            process.recordExit(ExitRecord(status: status, at: .now()))
            emit(task) { $0.exited(process.execID, status: status, oom: oom) }
            if process.execID.isEmpty {
                // Its execs die with it; their exits go first, but not for ever.
                try? await Task.sleep(for: .seconds(5))
                self.emit(task) { $0.releaseHeldExit() }
            }
        }
    }

    // MARK: state

    func state(_ request: Containerd_Task_V2_StateRequest) async throws -> Containerd_Task_V2_StateResponse {
        let task = try task(request.id)
        let process = try task.process(request.execID)
        let snapshot = process.snapshot
        var status = snapshot.status
        if status == .running, task.sandbox.isPaused { status = .paused }
        return .with {
            $0.id = request.execID.isEmpty ? task.id : request.execID
            $0.bundle = task.bundle
            $0.pid = snapshot.guestPID != 0 || request.execID.isEmpty ? shimPID : 0
            $0.status = status
            $0.stdin = process.io.stdinPath
            $0.stdout = process.io.stdoutPath
            $0.stderr = process.io.stderrPath
            $0.terminal = process.io.terminal
            $0.execID = request.execID
            if let exit = snapshot.exit {
                $0.exitStatus = exit.status
                $0.exitedAt = exit.at
            }
        }
    }

    func wait(_ request: Containerd_Task_V2_WaitRequest) async throws -> Containerd_Task_V2_WaitResponse {
        let process = try task(request.id).process(request.execID)
        let exit = await process.waitForExit()
        return .with {
            $0.exitStatus = exit.status
            $0.exitedAt = exit.at
        }
    }

    func pids(_ request: Containerd_Task_V2_PidsRequest) async throws -> Containerd_Task_V2_PidsResponse {
        let task = try task(request.id)
        let processes = ([task.main] + task.allExecs).map(\.snapshot).filter { $0.status == .running && $0.guestPID != 0 }
        return .with { response in
            response.processes = processes.map { process in .with { $0.pid = process.guestPID } }
        }
    }

    func connect(_ request: Containerd_Task_V2_ConnectRequest) async throws -> Containerd_Task_V2_ConnectResponse {
        .with {
            $0.shimPid = shimPID
            // The VMM is this process: the task's host pid.
            $0.taskPid = state.withLock { $0.tasks[request.id] } != nil ? shimPID : 0
            $0.version = "rund"
        }
    }

    func stats(_ request: Containerd_Task_V2_StatsRequest) async throws -> Containerd_Task_V2_StatsResponse {
        let task = try task(request.id)
        let paths = task.sandbox.cgroupPaths
        let any: Google_Protobuf_Any
        // A pod's containers share the host cgroup: each reports its own cgroup in the guest.
        if paths.isEmpty || task.isInPod {
            any = try TaskMetrics.any(TaskMetrics.fromGuest(try await task.container.guestStats()))
        } else {
            let read = TaskMetrics.reader(paths: paths)
            any = TaskMetrics.isV2(read) ? try TaskMetrics.any(TaskMetrics.v2(read)) : try TaskMetrics.any(TaskMetrics.v1(read))
        }
        return .with { $0.stats = any }
    }

    // MARK: processes

    func exec(_ request: Containerd_Task_V2_ExecProcessRequest) async throws -> Google_Protobuf_Empty {
        let task = try task(request.id)
        guard !request.execID.isEmpty else { throw ShimError(.invalidArgument, "an exec needs an exec id") }
        let main = task.main.snapshot.status
        guard main == .running, !task.sandbox.isPaused else {
            throw ShimError(
                .failedPrecondition,
                "cannot exec in a \(task.sandbox.isPaused ? "paused" : main == .created ? "created" : "stopped") container")
        }
        guard (try? task.process(request.execID)) == nil else {
            throw ShimError(.alreadyExists, "id \(request.execID): already exists")
        }
        var (spec, size) = try BundleSpec.execProcess(json: [UInt8](request.spec.value))
        let io = try ProcessIO(stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, terminal: request.terminal)
        spec.openStdin = io.stdin != nil
        if request.terminal { spec.terminal = .with { $0.size = AgentWindowSize(size ?? .fallback) } }
        guard task.add(TaskProcess(execID: request.execID, io: io, spec: spec)) else {
            io.close()
            throw ShimError(.alreadyExists, "id \(request.execID): already exists")
        }
        emit(task) { $0.execAdded(request.execID) }
        return Google_Protobuf_Empty()
    }

    func kill(_ request: Containerd_Task_V2_KillRequest) async throws -> Google_Protobuf_Empty {
        let task = try task(request.id)
        let process = try task.process(request.execID)
        guard let signal = Int32(exactly: request.signal), (1...64).contains(signal) else {
            throw ShimError(.invalidArgument, "signal \(request.signal) is not a Linux signal")
        }
        let snapshot = process.snapshot
        guard snapshot.exit == nil else { throw ShimError.notFound("process already finished") }
        if request.execID.isEmpty, task.isPodMember, snapshot.status == .created {
            // Never started: it never will.
            process.recordExit(ExitRecord(status: UInt32(128 + signal), at: .now()))
            emit(task) { $0.exited("", status: UInt32(128 + signal)) }
            return Google_Protobuf_Empty()
        }
        if request.execID.isEmpty && signal == SIGKILL && !task.isPodMember {
            // The main process's SIGKILL ends the sandbox: the host stops the VM itself, so a
            // guest that does not answer cannot keep it alive (SandboxControl's hard stop).
            task.sandbox.control.stop(.immediate(signal: SIGKILL))
            if snapshot.status == .created {
                process.recordExit(ExitRecord(status: UInt32(128 + SIGKILL), at: .now()))
                emit(task) { $0.exited("", status: UInt32(128 + SIGKILL)) }
            }
            return Google_Protobuf_Empty()
        }
        if snapshot.status == .created {
            guard request.execID.isEmpty else { throw ShimError(.failedPrecondition, "process \(request.execID) has not started") }
            task.sandbox.control.send(signal)  // Delivered once it starts.
            return Google_Protobuf_Empty()
        }
        do {
            // A pod's container's SIGKILL reaches every process of it: the VM is the pod's.
            let all = request.all || (task.isPodMember && request.execID.isEmpty && signal == SIGKILL)
            try await task.container.signal(signal, execID: request.execID, all: all)
        } catch let status as TTRPCStatus where status.code == .notFound {
            throw ShimError.notFound("process already finished")
        } catch {
            throw ShimError("cannot signal the process: \(await task.sandbox.explain(error))")
        }
        return Google_Protobuf_Empty()
    }

    func resizePty(_ request: Containerd_Task_V2_ResizePtyRequest) async throws -> Google_Protobuf_Empty {
        let task = try task(request.id)
        let process = try task.process(request.execID)
        guard process.io.terminal else { throw ShimError(.failedPrecondition, "the process has no terminal") }
        // ctr under a terminal-less caller sends 0x0: nothing to apply.
        guard let rows = UInt16(exactly: request.height), let columns = UInt16(exactly: request.width), rows > 0, columns > 0 else {
            return Google_Protobuf_Empty()
        }
        let size = WindowSize(rows: rows, columns: columns)
        if process.snapshot.status == .created, request.execID.isEmpty {
            task.sandbox.control.resize(to: size)
            return Google_Protobuf_Empty()
        }
        do {
            try await task.container.resize(execID: request.execID, to: size)
        } catch {
            throw ShimError("cannot resize the terminal: \(await task.sandbox.explain(error))")
        }
        return Google_Protobuf_Empty()
    }

    func closeIO(_ request: Containerd_Task_V2_CloseIORequest) async throws -> Google_Protobuf_Empty {
        let task = try task(request.id)
        let process = try task.process(request.execID)
        guard request.stdin, process.io.stdin != nil, process.snapshot.exit == nil else { return Google_Protobuf_Empty() }
        do {
            try await task.container.closeStdin(execID: request.execID)
        } catch {
            throw ShimError("cannot close the process's stdin: \(await task.sandbox.explain(error))")
        }
        return Google_Protobuf_Empty()
    }

    // MARK: pause, update, checkpoint

    func pause(_ request: Containerd_Task_V2_PauseRequest) async throws -> Google_Protobuf_Empty {
        let task = try task(request.id)
        guard !task.isInPod else {
            throw ShimError(.failedPrecondition, "cannot pause one container of a pod: its VM is the whole pod's")
        }
        guard task.main.snapshot.status == .running else {
            throw ShimError(.failedPrecondition, "cannot pause a container that is not running")
        }
        guard !task.sandbox.isPaused else { throw ShimError(.failedPrecondition, "cannot pause a paused container") }
        try task.sandbox.pause()
        emit(task) { _ in [.paused] }
        return Google_Protobuf_Empty()
    }

    func resume(_ request: Containerd_Task_V2_ResumeRequest) async throws -> Google_Protobuf_Empty {
        let task = try task(request.id)
        guard task.sandbox.isPaused else { throw ShimError(.failedPrecondition, "cannot resume a container that is not paused") }
        task.sandbox.resume()
        emit(task) { _ in [.resumed] }
        return Google_Protobuf_Empty()
    }

    func checkpoint(_ request: Containerd_Task_V2_CheckpointTaskRequest) async throws -> Google_Protobuf_Empty {
        throw ShimError(.unimplemented, "rund cannot checkpoint a sandbox")
    }

    func update(_ request: Containerd_Task_V2_UpdateTaskRequest) async throws -> Google_Protobuf_Empty {
        let task = try task(request.id)
        guard request.hasResources else { return Google_Protobuf_Empty() }
        let resources: OCIRuntimeSpec.Resources
        do {
            resources = try JSONDecoder().decode(OCIRuntimeSpec.Resources.self, from: request.resources.value)
        } catch {
            throw ShimError(.invalidArgument, "the resources are not OCI LinuxResources: \(BundleSpec.describe(error))")
        }
        if task.isInPod {
            // A pod's container: its memory limit is its cgroup's in the VM; CPU is the pod's VM's.
            if let limit = resources.memory?.limit {
                do {
                    try await task.container.updateMemoryLimit(bytes: UInt64(clamping: max(limit, 0)))
                } catch {
                    throw ShimError(.invalidArgument, "cannot apply the memory limit: \(await task.sandbox.explain(error))")
                }
            }
            return Google_Protobuf_Empty()
        }
        if let limit = resources.memory?.limit, limit > 0, limit >> 20 != Int64(task.sandbox.memoryMiB) {
            throw ShimError(
                .failedPrecondition,
                "the sandbox's memory is its VM's size (\(task.sandbox.memoryMiB) MiB), fixed when it was created: cannot change it to \(limit >> 20) MiB"
            )
        }
        if let cpu = resources.cpu, cpu.quota != nil || cpu.period != nil {
            let quota = cpu.quota.flatMap { $0 > 0 ? $0 : nil }
            do {
                try task.sandbox.updateCPU(quotaMicros: quota, periodMicros: cpu.period.map { Int64(clamping: $0) })
            } catch {
                throw ShimError(.invalidArgument, "cannot apply the CPU limits: \(error)")
            }
        }
        return Google_Protobuf_Empty()
    }

    // MARK: delete and shutdown

    func delete(_ request: Containerd_Task_V2_DeleteRequest) async throws -> Containerd_Task_V2_DeleteResponse {
        let task = try task(request.id)
        if !request.execID.isEmpty {
            let process = try task.process(request.execID)
            let snapshot = process.snapshot
            guard snapshot.status != .running else { throw ShimError(.failedPrecondition, "cannot delete a running process") }
            _ = task.remove(execID: request.execID)
            task.container.forgetProcess(execID: request.execID)
            await Self.onThread { process.io.close() }
            if snapshot.exit == nil { emit(task) { $0.execGone(request.execID) } }
            return .with {
                $0.pid = snapshot.guestPID != 0 ? shimPID : 0
                $0.exitStatus = snapshot.exit?.status ?? 0
                if let exit = snapshot.exit { $0.exitedAt = exit.at }
            }
        }
        let snapshot = task.main.snapshot
        guard snapshot.status != .running || snapshot.exit != nil else {
            throw ShimError(.failedPrecondition, "cannot delete a running process")
        }
        if task.isPodMember {
            // Its drives go back to the pod's VM, which runs on; a guest that does not answer
            // keeps them until the VM goes.
            do {
                try await task.sandbox.removeContainer(task.container)
            } catch {
                let explained = await task.sandbox.explain(error)
                logger.warning("container \(request.id) not removed from its pod's VM: \(explained)")
            }
        } else {
            // Never started, or ended: the VM goes now, the hard way (nothing in it is worth a
            // graceful shutdown: the writable layer is dropped with it). A pod's other
            // containers go with it.
            task.sandbox.control.stop(.immediate(signal: SIGKILL))
            await Self.onThread { task.sandbox.release() }
        }
        let exit = task.main.snapshot.exit ?? ExitRecord(status: UInt32(128 + SIGKILL), at: .now())
        task.main.recordExit(exit)
        for process in [task.main] + task.allExecs {
            process.recordExit(ExitRecord(status: UInt32(128 + SIGKILL), at: .now()))
            await Self.onThread { process.io.close() }
        }
        _ = state.withLock { $0.tasks.removeValue(forKey: request.id) }
        emit(task) { $0.deleted() }
        logger.info("deleted", metadata: ["id": "\(request.id)", "exitStatus": "\(exit.status)"])
        return .with {
            $0.pid = shimPID
            $0.exitStatus = exit.status
            $0.exitedAt = exit.at
        }
    }

    func shutdown(_ request: Containerd_Task_V2_ShutdownRequest) async throws -> Google_Protobuf_Empty {
        // Containers still here (a pod's others): the shim stays.
        let leaving = state.withLock { state -> Bool in
            guard state.tasks.isEmpty, state.creating.isEmpty else { return false }
            state.shuttingDown = true
            return true
        }
        if leaving { onShutdown() }
        return Google_Protobuf_Empty()
    }

    /// Stops every sandbox at once (the shim was told to terminate).
    func stopAll() {
        let tasks = state.withLock { state in
            state.shuttingDown = true
            return Array(state.tasks.values)
        }
        for task in tasks where !task.isPodMember {
            task.sandbox.control.stop(.immediate(signal: SIGKILL))
            task.sandbox.release()
        }
    }

    /// Runs blocking work (joining the VM's threads) on a thread of its own, not the pool's.
    static func onThread(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            do {
                try OSThread.spawn(name: "shim-release") {
                    work()
                    continuation.resume()
                }.detach()
            } catch {
                work()
                continuation.resume()
            }
        }
    }

    // MARK: events

    /// Applies `step` to the task's event order and publishes what it lets out, in order.
    func emit(_ task: ShimTask, _ step: (inout TaskEventOrder) -> [TaskEventOrder.Event]) {
        task.order.withLock { order in
            for event in step(&order) { publish(event, of: task) }
        }
    }

    private func publish(_ event: TaskEventOrder.Event, of task: ShimTask) {
        let id = task.id
        switch event {
        case .create:
            publisher.publish(
                topic: "/tasks/create",
                Containerd_Events_TaskCreate.with {
                    $0.containerID = id
                    $0.bundle = task.bundle
                    $0.rootfs = task.rootfs
                    $0.io = .with {
                        $0.stdin = task.main.io.stdinPath
                        $0.stdout = task.main.io.stdoutPath
                        $0.stderr = task.main.io.stderrPath
                        $0.terminal = task.main.io.terminal
                    }
                    $0.pid = shimPID
                })
        case .start:
            publisher.publish(
                topic: "/tasks/start",
                Containerd_Events_TaskStart.with {
                    $0.containerID = id
                    $0.pid = shimPID
                })
        case .execAdded(let execID):
            publisher.publish(
                topic: "/tasks/exec-added",
                Containerd_Events_TaskExecAdded.with {
                    $0.containerID = id
                    $0.execID = execID
                })
        case .execStarted(let execID):
            publisher.publish(
                topic: "/tasks/exec-started",
                Containerd_Events_TaskExecStarted.with {
                    $0.containerID = id
                    $0.execID = execID
                    $0.pid = shimPID
                })
        case .exit(let execID, let status):
            let at = (try? task.process(execID))?.snapshot.exit?.at ?? .now()
            publisher.publish(
                topic: "/tasks/exit",
                Containerd_Events_TaskExit.with {
                    $0.containerID = id
                    $0.id = execID.isEmpty ? id : execID
                    $0.pid = shimPID
                    $0.exitStatus = status
                    $0.exitedAt = at
                })
        case .oom:
            publisher.publish(topic: "/tasks/oom", Containerd_Events_TaskOOM.with { $0.containerID = id })
        case .delete:
            let exit = task.main.snapshot.exit
            publisher.publish(
                topic: "/tasks/delete",
                Containerd_Events_TaskDelete.with {
                    $0.containerID = id
                    $0.pid = shimPID
                    $0.exitStatus = exit?.status ?? 0
                    if let exit { $0.exitedAt = exit.at }
                })
        case .paused:
            publisher.publish(topic: "/tasks/paused", Containerd_Events_TaskPaused.with { $0.containerID = id })
        case .resumed:
            publisher.publish(topic: "/tasks/resumed", Containerd_Events_TaskResumed.with { $0.containerID = id })
        }
    }
}
