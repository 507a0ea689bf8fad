#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS
import Synchronization
import TTRPC

/// Every process the agent started, by name and by pid. Spawning and registering happen under
/// one lock hold, and exits are delivered under the same lock, so an exit reaped the instant
/// after fork still finds its process.
public final class ProcessTable: Sendable {
    /// Who collects exit statuses.
    public enum Reaping: Sendable {
        /// PID 1: a `ChildReaper` collects every child (orphans included) and calls `childExited`.
        case byReaper
        /// Not PID 1 (tests on a host): a thread per process waits for that pid only, so other
        /// children of the same process are left alone.
        case perProcess
    }

    private struct State {
        var byKey: [ProcessKey: GuestProcess] = [:]
        var byPID: [pid_t: GuestProcess] = [:]
    }

    private let state = Mutex(State())
    private let reaping: Reaping

    public init(reaping: Reaping) {
        self.reaping = reaping
    }

    /// Starts `plan` as process `key`; ALREADY_EXISTS when that name is taken.
    func start(_ key: ProcessKey, _ plan: LaunchPlan, in place: SpawnPlace = .guestRoot) throws -> GuestProcess {
        let process = try state.withLock { state throws -> GuestProcess in
            guard state.byKey[key] == nil else {
                throw TTRPCStatus(.alreadyExists, "\(key) already has a process")
            }
            let process = try Self.spawn(key, plan, place)
            state.byKey[key] = process
            state.byPID[process.pid] = process
            return process
        }
        if case .perProcess = reaping {
            let pid = process.pid
            try DetachedThread.start(name: "wait-\(pid)") { [self] in
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                childExited(pid: pid, waitStatus: status)
            }
        }
        return process
    }

    /// Records an exit (from the reaper or a per-process waiter); unknown pids (orphans that
    /// were reparented to PID 1, failed spawns) are ignored.
    public func childExited(pid: pid_t, waitStatus: Int32) {
        let process = state.withLock { $0.byPID.removeValue(forKey: pid) }
        process?.exited(ExitStatus(waitStatus: waitStatus))
    }

    func process(_ key: ProcessKey) throws(TTRPCStatus) -> GuestProcess {
        guard let process = state.withLock({ $0.byKey[key] }) else {
            throw TTRPCStatus(.notFound, "no process for \(key): start it first")
        }
        return process
    }

    func processes(inContainer containerID: String) -> [GuestProcess] {
        state.withLock { $0.byKey.values.filter { $0.key.containerID == containerID } }
    }

    func allProcesses() -> [GuestProcess] {
        state.withLock { Array($0.byKey.values) }
    }

    /// Forgets a process once WaitProcess has reported its exit and both outputs were read to
    /// the end: nobody can learn anything more about it.
    func retireIfFinished(_ key: ProcessKey) {
        state.withLock { state in
            guard let process = state.byKey[key], process.hasReportedExit,
                process.stdout.isDrained, process.stderr.isDrained
            else { return }
            state.byKey.removeValue(forKey: key)
        }
    }

    /// Forgets every process of a removed container, ended or not (their ids may be used again).
    func forget(containerID: String) {
        state.withLock { state in
            for key in state.byKey.keys where key.containerID == containerID { state.byKey.removeValue(forKey: key) }
        }
    }

    // MARK: spawning

    private static func spawn(_ key: ProcessKey, _ plan: LaunchPlan, _ place: SpawnPlace) throws -> GuestProcess {
        let reportPipe = try Pipe.make()
        let io = try ChildIO(plan)
        let limits = plan.limits.map { rund_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        let changesIdentity = plan.uid != getuid() || plan.gid != getgid() || !plan.additionalGIDs.isEmpty
        let container: ContainerRoot?
        var namespaces: [FileDescriptor] = []
        var shared: [FileDescriptor] = []
        switch place {
        case .guestRoot:
            container = nil
        case .newContainer(let root, let sharingWith):
            container = root
            if let sharingWith {
                for name in ["uts", "ipc"] {
                    shared.append(try FileDescriptor.open("/proc/\(sharingWith)/ns/\(name)", O_RDONLY | O_CLOEXEC))
                }
            }
        case .joining(let root, let mainPID):
            container = root
            for name in ["mnt", "uts", "ipc", "pid"] {
                namespaces.append(try FileDescriptor.open("/proc/\(mainPID)/ns/\(name)", O_RDONLY | O_CLOEXEC))
            }
        }
        let joinFDs =
            namespaces.count == 4
            ? (namespaces[0].rawValue, namespaces[1].rawValue, namespaces[2].rawValue, namespaces[3].rawValue) : (-1, -1, -1, -1)
        let shareFDs = shared.count == 2 ? (shared[0].rawValue, shared[1].rawValue) : (-1, -1)
        let cgroupProcesses = try container?.cgroup?.openProcesses()
        defer { cgroupProcesses?.close() }
        let oomKillsAtStart = container?.cgroup?.oomKills() ?? GuestStats.oomKills()
        // A process that shares another container's UTS namespace keeps that hostname.
        let hostname = shared.isEmpty ? container?.hostname : nil
        let directPID = withOptionalCString(container?.plan.rootfs) { rootfs in
            withOptionalCString(hostname) { hostname in
                var spawnPlace = rund_spawn_place(
                    rootfs: rootfs, hostname: hostname, join_fds: joinFDs, share_fds: shareFDs,
                    cgroup_procs_fd: cgroupProcesses?.rawValue ?? -1)
                return withCStrings(plan.arguments) { argv in
                    withCStrings(plan.environment) { envp in
                        plan.additionalGIDs.withUnsafeBufferPointer { groups in
                            limits.withUnsafeBufferPointer { limits in
                                rund_spawn_process(
                                    plan.executable, argv, envp, plan.workingDirectory,
                                    io.terminal == nil ? 0 : 1, changesIdentity ? 1 : 0, plan.uid, plan.gid, groups.baseAddress,
                                    groups.count,
                                    limits.baseAddress, limits.count,
                                    io.childStdin.rawValue, io.childStdout.rawValue, io.childStderr.rawValue,
                                    reportPipe.write.rawValue, &spawnPlace)
                            }
                        }
                    }
                }
            }
        }
        guard directPID > 0 else { throw SystemError.last("clone", subject: plan.executable) }
        io.closeChildEnds()
        reportPipe.write.close()
        for namespace in namespaces + shared { namespace.close() }
        // Records until every writer is gone: exec closes the pipe, a failed step reports first.
        let report = SpawnReport.read(from: reportPipe.read)
        var pid = directPID
        if case .joining = place {
            // The intermediate child exits once it has named the process; collect it (under a
            // reaper this may find it already gone: ECHILD).
            var status: Int32 = 0
            while waitpid(directPID, &status, 0) < 0 && errno == EINTR {}
            pid = report.processID ?? -1
        }
        if let failure = report.failure {
            if pid > 0 {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            }
            throw TTRPCStatus(
                .failedPrecondition,
                "cannot start \(plan.executable): \(SpawnStep.describe(failure.step)) failed: \(String(cString: strerror(failure.errno)))")
        }
        guard pid > 0 else { throw TTRPCStatus(.internal, "the exec into \(key) did not report its pid") }
        return GuestProcess(
            key: key, pid: pid, stdin: io.stdinWriter,
            stdout: try ProcessOutput(draining: io.stdoutReader, name: "out-\(pid)"),
            stderr: try io.stderrReader.map { try ProcessOutput(draining: $0, name: "err-\(pid)") } ?? .ended(),
            terminal: io.terminal, cgroup: container?.cgroup, oomKillsAtStart: oomKillsAtStart)
    }

    private static func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
        guard let string else { return body(nil) }
        return string.withCString { body($0) }
    }
}

/// What the child side of rund_spawn_process wrote on the report pipe.
struct SpawnReport {
    var processID: pid_t?
    var failure: (errno: Int32, step: Int32)?

    static func read(from pipe: FileDescriptor) -> SpawnReport {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64)
        while bytes.count < 4096 {
            let count = (try? chunk.withUnsafeMutableBytes { try pipe.read(into: $0) }) ?? 0
            if count == 0 { break }
            bytes += chunk[0..<count]
        }
        return parse(bytes)
    }

    /// Records of three native Int32s: {1, pid, 0} or {2, errno, step}.
    static func parse(_ bytes: [UInt8]) -> SpawnReport {
        var report = SpawnReport()
        let stride = 3 * MemoryLayout<Int32>.size
        var offset = 0
        while offset + stride <= bytes.count {
            let record = (0..<3).map { index in
                bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + index * 4, as: Int32.self) }
            }
            switch record[0] {
            case 1: report.processID = record[1]
            case 2: report.failure = (record[1], record[2])
            default: break
            }
            offset += stride
        }
        return report
    }
}

/// The steps rund_spawn_process numbers in its error report.
enum SpawnStep {
    static func describe(_ step: Int32) -> String {
        switch step {
        case 1: return "redirecting stdio"
        case 2: return "setrlimit"
        case 3: return "setgroups"
        case 4: return "setgid"
        case 5: return "setuid"
        case 6: return "chdir to the working directory"
        case 7: return "execve"
        case 8: return "making mounts private"
        case 9: return "sethostname"
        case 10: return "mounting /proc in the container"
        case 11: return "binding /dev into the container"
        case 12: return "chroot into the container rootfs"
        case 13: return "chdir to the container root"
        case 14: return "joining the container's namespaces"
        case 15: return "clone inside the container"
        case 16: return "making the terminal the controlling terminal"
        case 17: return "joining the pod's UTS and IPC namespaces"
        case 18: return "entering the container's cgroup"
        default: return "step \(step)"
        }
    }
}

/// The descriptors a new process gets as 0/1/2 and the agent's ends of them: three pipes, or a
/// pseudo-terminal whose master the agent reads, writes and resizes.
struct ChildIO {
    var childStdin: FileDescriptor
    var childStdout: FileDescriptor
    var childStderr: FileDescriptor
    var stdinWriter: FileDescriptor?
    var stdoutReader: FileDescriptor
    var stderrReader: FileDescriptor?
    var terminal: FileDescriptor?

    init(_ plan: LaunchPlan) throws {
        if let size = plan.terminal {
            var master: Int32 = -1, slave: Int32 = -1
            _ = try retryingInterrupts("open pseudo-terminal", subject: "/dev/ptmx") {
                rund_open_pty(&master, &slave, size.rows, size.columns, size.width, size.height)
            }
            let terminal = FileDescriptor(adopting: master), child = FileDescriptor(adopting: slave)
            (childStdin, childStdout, childStderr) = (child, child, child)
            self.terminal = terminal
            stdoutReader = try Self.duplicate(terminal)
            stdinWriter = plan.opensStdin ? try Self.duplicate(terminal) : nil
            stderrReader = nil
            return
        }
        let stdout = try Pipe.make(), stderr = try Pipe.make()
        (childStdout, stdoutReader) = (stdout.write, stdout.read)
        (childStderr, stderrReader) = (stderr.write, stderr.read)
        if plan.opensStdin {
            let stdin = try Pipe.make()
            (childStdin, stdinWriter) = (stdin.read, stdin.write)
        } else {
            childStdin = try FileDescriptor.open("/dev/null", O_RDONLY | O_CLOEXEC)
            stdinWriter = nil
        }
        terminal = nil
    }

    /// The agent keeps none of the child's ends once the child has them.
    func closeChildEnds() {
        for descriptor in [childStdin, childStdout, childStderr] where descriptor.isOpen { descriptor.close() }
    }

    private static func duplicate(_ descriptor: FileDescriptor) throws -> FileDescriptor {
        let fd = try retryingInterrupts("dup") { rund_fcntl_int(descriptor.rawValue, F_DUPFD_CLOEXEC, 0) }
        return FileDescriptor(adopting: fd)
    }
}
