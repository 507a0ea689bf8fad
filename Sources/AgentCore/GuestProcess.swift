#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Synchronization

/// One process the agent started: its stdin pipe, its two drained outputs and its exit status.
final class GuestProcess: Sendable {
    let key: ProcessKey
    let pid: pid_t
    let stdout: ProcessOutput
    let stderr: ProcessOutput
    /// The write end of stdin's pipe; nil when closed or never opened. Locked across writes so a
    /// close never lands on a descriptor another thread is writing to.
    private let stdin: Mutex<FileDescriptor?>
    private let exit = Monitor<ExitStatus?>(nil)
    private let exitReported = Atomic(false)

    /// The terminal's master side, for ResizeTerminal; nil for pipes.
    let terminal: FileDescriptor?
    /// Its container's own cgroup (a pod's container), where its OOM kills are counted.
    let cgroup: ContainerCgroup?
    /// The OOM kill count (its cgroup's, else the guest's) just before the process started:
    /// more at its exit means the OOM killer fired while it ran.
    let oomKillsAtStart: UInt64

    init(
        key: ProcessKey, pid: pid_t, stdin: FileDescriptor?, stdout: ProcessOutput, stderr: ProcessOutput, terminal: FileDescriptor?,
        cgroup: ContainerCgroup? = nil, oomKillsAtStart: UInt64 = 0
    ) {
        self.key = key
        self.cgroup = cgroup
        self.oomKillsAtStart = oomKillsAtStart
        self.terminal = terminal
        self.pid = pid
        self.stdin = Mutex(stdin)
        self.stdout = stdout
        self.stderr = stderr
    }

    func exited(_ status: ExitStatus) {
        exit.update { $0 = status }
    }

    var exitStatus: ExitStatus? { exit.read { $0 } }

    /// Whether the OOM killer fired (in its cgroup, else anywhere in the guest) since it started.
    var oomKillSinceStart: Bool { (cgroup?.oomKills() ?? GuestStats.oomKills()) > oomKillsAtStart }

    func waitForExit() async throws -> ExitStatus {
        let status = try await exit.wait { $0 }
        exitReported.store(true, ordering: .sequentiallyConsistent)
        return status
    }

    /// WaitProcess has answered with the exit status at least once.
    var hasReportedExit: Bool { exitReported.load(ordering: .sequentiallyConsistent) }

    /// Writes on its own thread (a full pipe must not hold a pool thread); returns how many
    /// bytes went in before the process closed its end.
    func writeStdin(_ bytes: [UInt8]) async throws -> Int {
        try await Offload.run(name: "stdin-\(pid)") { [self] in
            try stdin.withLock { descriptor -> Int in
                guard let descriptor else { throw StdinClosed() }
                var written = 0
                while written < bytes.count {
                    let count = bytes.withUnsafeBytes { raw in
                        Glibc.write(descriptor.rawValue, raw.baseAddress! + written, raw.count - written)
                    }
                    if count >= 0 { written += count; continue }
                    if errno == EINTR { continue }
                    if errno == EPIPE { break }
                    throw SystemError.last("write", subject: "stdin")
                }
                return written
            }
        }
    }

    func closeStdin() async throws {
        try await Offload.run(name: "stdin-\(pid)") { [self] in
            stdin.withLock { descriptor in
                descriptor?.close()
                descriptor = nil
            }
        }
    }

    /// Signals the process unless it was already reaped (its pid may be reused by then).
    func signal(_ number: Int32) throws {
        guard exitStatus == nil else { return }
        _ = try retryingInterrupts("kill", subject: "pid \(pid)") { Glibc.kill(pid, number) }
    }

    struct StdinClosed: Error {}
}

/// Names a process: exec id "" is the container's main process.
public struct ProcessKey: Hashable, Sendable, CustomStringConvertible {
    public var containerID: String
    public var execID: String

    public init(containerID: String, execID: String) {
        self.containerID = containerID
        self.execID = execID
    }

    public var description: String {
        execID.isEmpty ? "container \(containerID)" : "exec \(execID) of container \(containerID)"
    }
}

/// Runs a blocking call on a fresh OS thread and resumes the caller with its result.
enum Offload {
    static func run<R: Sendable>(name: String, _ body: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            do {
                try DetachedThread.start(name: name) {
                    continuation.resume(with: Result { try body() })
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }
}
