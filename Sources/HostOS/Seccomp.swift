#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Synchronization

/// A seccomp-bpf allowlist for one kind of thread (what Firecracker installs per vCPU, VMM and
/// API thread). `applyToCurrentThread` confines the calling thread for the rest of its life. A
/// system call outside the list is trapped (SIGSYS): it never runs, it fails with ENOSYS, the
/// owner's violation handler is told which call it was, and the thread is marked
/// (`currentThreadWasTrapped`) so that it ends at its next check. Unwinding rather than dying on
/// the spot lets the thread release the locks it holds, which the rest of the process needs to
/// stop the VM cleanly. A call made for another architecture (i386) kills the process; x32 calls are trapped.
public struct SeccompFilter: Sendable {
    /// Names the thread kind in reports ("vCPU", "agent connection").
    public let name: String
    public let allowedCalls: Set<Int32>
    /// `ioctl` is allowed for these request numbers only (none: ioctl is not allowed).
    public let ioctlRequests: Set<UInt32>

    public init(name: String, allowing calls: Set<Int32>, ioctlRequests: Set<UInt32> = []) {
        self.name = name
        self.allowedCalls = calls.subtracting([Int32(SYS_ioctl)])
        self.ioctlRequests = ioctlRequests
    }

    /// Calls every confined thread makes whatever it does: the C library's and Swift runtime's
    /// memory management, locks, clocks, signals (the VMM's kick, and the SIGSYS report itself:
    /// gettid, write, exit), and ending the thread.
    public static let threadEssentials: Set<Int32> = [
        SYS_read, SYS_write, SYS_close, SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_madvise, SYS_brk,
        SYS_futex, SYS_sched_yield, SYS_gettid, SYS_getpid, SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep,
        SYS_rt_sigprocmask, SYS_rt_sigreturn, SYS_sigaltstack, SYS_restart_syscall, SYS_getrandom, SYS_exit,
    ].reduce(into: []) { $0.insert(Int32($1)) }

    /// The filter as BPF: check the architecture, then allow listed calls, then ioctl by request.
    func program() -> [sock_filter] {
        let allow = UInt32(SECCOMP_RET_ALLOW), trap = UInt32(SECCOMP_RET_TRAP)
        let killProcess = UInt32(SECCOMP_RET_KILL_PROCESS)
        let architectureOffset: UInt32 = 4, numberOffset: UInt32 = 0
        let ioctlRequestOffset: UInt32 = 16 + 8  // args[1], low 32 bits (the kernel takes an unsigned int)
        let calls = allowedCalls.sorted()
        let requests = ioctlRequests.sorted()
        var code: [sock_filter] = [
            Self.load(architectureOffset),
            Self.jumpIfEqual(rund_audit_arch_x86_64(), then: 1, else: 0),
            Self.ret(killProcess),  // Another architecture's numbers mean other calls: none gets through.
            Self.load(numberOffset),
            // x32 calls are the same numbers with bit 30 set.
            sock_filter(code: UInt16(BPF_JMP | BPF_JGE | BPF_K), jt: 0, jf: 1, k: 0x4000_0000),
            Self.ret(trap),
        ]
        // Each match jumps straight to the ALLOW at the end, over the rest of the list and what
        // lies between it and the ALLOW; the distance fits a UInt8 because lists are short
        // (`maxListed`).
        let between = requests.isEmpty ? 1 : 4 + requests.count
        for (index, call) in calls.enumerated() {
            let distance = calls.count - index - 1 + between
            code.append(Self.jumpIfEqual(UInt32(call), then: UInt8(distance), else: 0))
        }
        if requests.isEmpty {
            code.append(Self.ret(trap))
        } else {
            code.append(Self.jumpIfEqual(UInt32(SYS_ioctl), then: 1, else: 0))
            code.append(Self.ret(trap))
            code.append(Self.load(ioctlRequestOffset))
            for (index, request) in requests.enumerated() {
                code.append(Self.jumpIfEqual(request, then: UInt8(requests.count - index), else: 0))
            }
            code.append(Self.ret(trap))
        }
        code.append(Self.ret(allow))
        return code
    }

    static let maxListed = 200

    /// Confines the calling thread. `onViolation` runs (on another thread) if it is trapped.
    public func applyToCurrentThread(onViolation: @escaping @Sendable (SeccompViolation) -> Void) throws {
        guard allowedCalls.count + ioctlRequests.count < Self.maxListed else {
            throw SystemError("seccomp", errno: E2BIG, subject: "filter \(name) lists too many calls")
        }
        try SeccompViolations.shared.prepare()
        // A trap while SIGSYS is blocked would reset its handler and kill the whole process.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGSYS)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        let tid = Int32(truncatingIfNeeded: rund_gettid())
        SeccompViolations.shared.register(tid: tid, filter: name, onViolation)
        let code = program()
        let installed = code.withUnsafeBufferPointer { rund_seccomp_install_filter($0.baseAddress, UInt16(code.count)) }
        guard installed == 0 else {
            let error = SystemError.last("seccomp", subject: "filter \(name)")
            SeccompViolations.shared.unregister(tid: tid)
            throw error
        }
    }

    /// True once the calling thread's filter has trapped one of its calls: the thread must end.
    public static var currentThreadWasTrapped: Bool { rund_seccomp_current_thread_trapped() != 0 }

    /// The calling thread is about to end: forget its violation handler (unless a trap's report
    /// is on its way to it: the report takes it then).
    public static func threadEnding() {
        guard !currentThreadWasTrapped else { return }
        SeccompViolations.shared.unregister(tid: Int32(truncatingIfNeeded: rund_gettid()))
    }

    private static func load(_ offset: UInt32) -> sock_filter {
        sock_filter(code: UInt16(BPF_LD | BPF_W | BPF_ABS), jt: 0, jf: 0, k: offset)
    }

    private static func jumpIfEqual(_ value: UInt32, then: UInt8, else otherwise: UInt8) -> sock_filter {
        sock_filter(code: UInt16(BPF_JMP | BPF_JEQ | BPF_K), jt: then, jf: otherwise, k: value)
    }

    private static func ret(_ action: UInt32) -> sock_filter {
        sock_filter(code: UInt16(BPF_RET | BPF_K), jt: 0, jf: 0, k: action)
    }
}

/// A confined thread made a call its filter forbids (which did not run); the thread is ending.
public struct SeccompViolation: Sendable, CustomStringConvertible {
    public let threadID: Int32
    public let filter: String
    public let systemCall: Int32

    public var description: String {
        "the \(filter) thread made a system call its seccomp filter forbids (\(SystemCallName.of(systemCall)))"
    }
}

/// The process-wide end of the SIGSYS handler: one thread reads what trapped threads report and
/// hands each report to the handler their owner registered.
final class SeccompViolations: Sendable {
    static let shared = SeccompViolations()

    private struct State {
        var prepared = false
        var handlers: [Int32: (filter: String, handler: @Sendable (SeccompViolation) -> Void)] = [:]
    }
    private let state = Mutex(State())

    /// Once per process: the report pipe, its reader thread, the SIGSYS handler. Also pins the
    /// time zone: with TZ unset, the C library stats /etc/localtime for every local time it
    /// formats (a log line's timestamp), a call no confined thread is allowed.
    func prepare() throws {
        try state.withLock { state in
            guard !state.prepared else { return }
            if getenv("TZ") == nil { setenv("TZ", ":/etc/localtime", 0) }
            tzset()
            var fds: [Int32] = [0, 0]
            _ = try retryingInterrupts("pipe2") { rund_pipe_cloexec(&fds) }
            let reports = FileDescriptor(adopting: fds[0])
            let writer = FileDescriptor(adopting: fds[1])
            // On a failure below both ends close (the reader then ends), and a later call retries.
            let reader = try OSThread.spawn(name: "seccomp-report") { [self] in
                var record: (Int32, Int32) = (0, 0)
                while true {
                    let n = withUnsafeMutableBytes(of: &record) { Glibc.read(reports.rawValue, $0.baseAddress, $0.count) }
                    if n == MemoryLayout.size(ofValue: record) {
                        report(threadID: record.0, call: record.1)
                    } else if n == 0 || (n < 0 && errno != EINTR) {
                        return
                    }
                }
            }
            guard rund_seccomp_install_trap_handler(writer.rawValue) == 0 else {
                let error = SystemError.last("sigaction", subject: "SIGSYS")
                writer.close()
                reader.join()
                throw error
            }
            // The handler writes to this descriptor for the life of the process.
            writer.relinquish()
            reader.detach()
            state.prepared = true
        }
    }

    func register(tid: Int32, filter: String, _ handler: @escaping @Sendable (SeccompViolation) -> Void) {
        state.withLock { $0.handlers[tid] = (filter, handler) }
    }

    func unregister(tid: Int32) {
        state.withLock { _ = $0.handlers.removeValue(forKey: tid) }
    }

    private func report(threadID: Int32, call: Int32) {
        let entry = state.withLock { $0.handlers.removeValue(forKey: threadID) }
        let violation = SeccompViolation(threadID: threadID, filter: entry?.filter ?? "confined", systemCall: call)
        entry?.handler(violation)
    }
}

/// x86-64 system call names for reports (the ones a confined thread could plausibly reach for).
public enum SystemCallName {
    private static let names: [Int32: String] = [
        SYS_open: "open", SYS_openat: "openat", SYS_openat2: "openat2", SYS_socket: "socket", SYS_connect: "connect",
        SYS_execve: "execve", SYS_execveat: "execveat", SYS_clone: "clone", SYS_clone3: "clone3", SYS_fork: "fork",
        SYS_vfork: "vfork", SYS_ptrace: "ptrace", SYS_mount: "mount", SYS_ioctl: "ioctl", SYS_kill: "kill",
        SYS_tgkill: "tgkill", SYS_unlink: "unlink", SYS_unlinkat: "unlinkat", SYS_mkdir: "mkdir", SYS_mkdirat: "mkdirat",
        SYS_getppid: "getppid", SYS_bpf: "bpf", SYS_setuid: "setuid", SYS_prctl: "prctl", SYS_seccomp: "seccomp",
        SYS_newfstatat: "newfstatat", SYS_fstat: "fstat", SYS_poll: "poll", SYS_ppoll: "ppoll", SYS_pread64: "pread64",
        SYS_pwrite64: "pwrite64", SYS_fsync: "fsync", SYS_fdatasync: "fdatasync", SYS_lseek: "lseek",
    ].reduce(into: [:]) { $0[Int32($1.key)] = $1.value }

    public static func of(_ number: Int32) -> String {
        names[number].map { "\($0), number \(number)" } ?? "number \(number)"
    }
}

/// Process-wide hardening a VMM process applies once it is set up.
public enum ProcessHardening {
    /// No core dumps, no ptrace by anyone but root, /proc/PID/* owned by root: the process holds
    /// a tenant's memory and secrets (PR_SET_DUMPABLE 0).
    public static func makeUndumpable() throws {
        guard rund_prctl(PR_SET_DUMPABLE, 0) == 0 else { throw SystemError.last("prctl", subject: "PR_SET_DUMPABLE 0") }
    }

    public static var isDumpable: Bool { rund_prctl(PR_GET_DUMPABLE, 0) != 0 }
}
