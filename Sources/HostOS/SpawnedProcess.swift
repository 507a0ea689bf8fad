#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Synchronization

/// A child started with posix_spawn that keeps running while the caller works with it
/// (moves it between cgroups, signals it); `Subprocess.run` is for children run to completion.
/// Call `wait()` (or `kill()` then `wait()`) so no zombie is left; once reaped, `kill` does
/// nothing (the pid may belong to someone else by then) and `wait` returns the same status.
public final class SpawnedProcess: Sendable {
    public let pid: pid_t
    private let exitStatus = Mutex<Int32?>(nil)

    private init(pid: pid_t) { self.pid = pid }

    /// Starts argv (searched on PATH). `standardInput`/`standardOutput` are dup'ed onto the
    /// child's fd 0/1; by default both are /dev/null. stderr is inherited unless `standardError`
    /// is given. Each of `passing` is dup'ed onto the child's descriptor of that number (a tap
    /// QEMU is to use, say), so it alone of the caller's close-on-exec descriptors reaches it.
    public static func spawn(
        _ argv: [String], standardInput: FileDescriptor? = nil, standardOutput: FileDescriptor? = nil,
        standardError: FileDescriptor? = nil, passing: [(descriptor: FileDescriptor, as: Int32)] = []
    ) throws -> SpawnedProcess {
        precondition(!argv.isEmpty)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let standardInput {
            posix_spawn_file_actions_adddup2(&actions, standardInput.rawValue, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        if let standardOutput {
            posix_spawn_file_actions_adddup2(&actions, standardOutput.rawValue, 1)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        }
        if let standardError { posix_spawn_file_actions_adddup2(&actions, standardError.rawValue, 2) }
        for passed in passing { posix_spawn_file_actions_adddup2(&actions, passed.descriptor.rawValue, passed.as) }
        var pid: pid_t = 0
        let status = withCStrings(argv) { cArgv in
            SpawnAttributes.withCleanSignals { attributes in
                posix_spawnp(&pid, argv[0], &actions, attributes, cArgv, environ)
            }
        }
        if status != 0 { throw SystemError("posix_spawn", errno: status, subject: argv[0]) }
        return SpawnedProcess(pid: pid)
    }

    /// Sends a signal; a child that already exited (zombie) is not an error.
    public func kill(_ signal: Int32 = SIGKILL) {
        exitStatus.withLock { status in
            if status == nil { _ = Glibc.kill(pid, signal) }
        }
    }

    /// Waits for exit; returns the exit status, or 128+signal.
    @discardableResult
    public func wait() throws -> Int32 {
        if let status = exitStatus.withLock({ $0 }) { return status }
        let status = try Subprocess.wait(pid)
        exitStatus.withLock { $0 = status }
        return status
    }
}

/// A pipe(2) pair, both ends close-on-exec (posix_spawn's dup2 clears it on the child's copy).
public enum Pipe {
    public static func make() throws -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: [Int32] = [0, 0]
        _ = try retryingInterrupts("pipe2") { rund_pipe_cloexec(&fds) }
        return (FileDescriptor(adopting: fds[0]), FileDescriptor(adopting: fds[1]))
    }
}

extension SpawnedProcess {
    /// Starts `executable` as a daemon: a new session (no controlling terminal, its own process
    /// group), stdin/stdout/stderr on /dev/null, `passing` as its fd 3, the caller's environment
    /// and working directory. The caller does not wait for it (it is reparented to init when
    /// the caller exits); returns its pid.
    public static func spawnDaemon(_ executable: String, arguments: [String], passing descriptor: FileDescriptor) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // dup2 onto 3 clears close-on-exec on the copy; the same number would keep it.
        if descriptor.rawValue == 3 {
            posix_spawn_file_actions_adddup2(&actions, 3, 4)
            posix_spawn_file_actions_adddup2(&actions, 4, 3)
            posix_spawn_file_actions_addclose(&actions, 4)
        } else {
            posix_spawn_file_actions_adddup2(&actions, descriptor.rawValue, 3)
        }
        var pid: pid_t = 0
        let status = withCStrings([executable] + arguments) { cArgv in
            SpawnAttributes.withCleanSignals(extraFlags: rund_posix_spawn_setsid()) { attributes in
                posix_spawn(&pid, executable, &actions, attributes, cArgv, environ)
            }
        }
        if status != 0 { throw SystemError("posix_spawn", errno: status, subject: executable) }
        return pid
    }
}
