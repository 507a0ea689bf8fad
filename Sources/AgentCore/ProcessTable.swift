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
    func start(_ key: ProcessKey, _ plan: LaunchPlan) throws -> GuestProcess {
        let process = try state.withLock { state throws -> GuestProcess in
            guard state.byKey[key] == nil else {
                throw TTRPCStatus(.alreadyExists, "\(key) already has a process")
            }
            let process = try Self.spawn(key, plan)
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
                  process.stdout.isDrained, process.stderr.isDrained else { return }
            state.byKey.removeValue(forKey: key)
        }
    }

    // MARK: spawning

    private static func spawn(_ key: ProcessKey, _ plan: LaunchPlan) throws -> GuestProcess {
        let stdoutPipe = try Pipe.make(), stderrPipe = try Pipe.make(), errorPipe = try Pipe.make()
        let stdinRead: FileDescriptor, stdinWrite: FileDescriptor?
        if plan.opensStdin {
            let pipe = try Pipe.make()
            (stdinRead, stdinWrite) = (pipe.read, pipe.write)
        } else {
            stdinRead = try FileDescriptor.open("/dev/null", O_RDONLY | O_CLOEXEC)
            stdinWrite = nil
        }
        let limits = plan.limits.map { rund_rlimit(resource: $0.resource, soft: $0.soft, hard: $0.hard) }
        let changesIdentity = plan.uid != getuid() || plan.gid != getgid() || !plan.additionalGIDs.isEmpty
        let pid = withCStrings(plan.arguments) { argv in
            withCStrings(plan.environment) { envp in
                plan.additionalGIDs.withUnsafeBufferPointer { groups in
                    limits.withUnsafeBufferPointer { limits in
                        rund_spawn_process(
                            plan.executable, argv, envp, plan.workingDirectory,
                            changesIdentity ? 1 : 0, plan.uid, plan.gid, groups.baseAddress, groups.count,
                            limits.baseAddress, limits.count,
                            stdinRead.rawValue, stdoutPipe.write.rawValue, stderrPipe.write.rawValue,
                            errorPipe.write.rawValue)
                    }
                }
            }
        }
        guard pid > 0 else { throw SystemError.last("fork", subject: plan.executable) }
        stdinRead.close()
        stdoutPipe.write.close()
        stderrPipe.write.close()
        errorPipe.write.close()
        // The child reports a failed setup step on the error pipe; exec closes it silently.
        var report: [Int32] = [0, 0]
        let count = report.withUnsafeMutableBytes { (try? errorPipe.read.read(into: $0)) ?? 0 }
        if count > 0 {
            // Collect the failed child; under a reaper this may find it already gone (ECHILD).
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            throw TTRPCStatus(.failedPrecondition, "cannot start \(plan.executable): \(SpawnStep.describe(report[1])) failed: \(String(cString: strerror(report[0])))")
        }
        let process = GuestProcess(
            key: key, pid: pid, stdin: stdinWrite,
            stdout: try ProcessOutput(draining: stdoutPipe.read, name: "out-\(pid)"),
            stderr: try ProcessOutput(draining: stderrPipe.read, name: "err-\(pid)"))
        return process
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
        default: return "step \(step)"
        }
    }
}
