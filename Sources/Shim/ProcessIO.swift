#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS
import Logging
import Sandbox
import Synchronization

/// Where a task process's stdio goes, from the paths containerd gives: a FIFO (a plain path or
/// `fifo://PATH`, which the client created and already opened), `file:///PATH` (appended to,
/// as `ctr run --log-uri` asks), or "" for none. `binary://` loggers are refused.
struct StdioTarget: Sendable, Equatable {
    enum Kind: Sendable, Equatable {
        case none
        case fifo(String)
        case file(String)
    }

    let kind: Kind

    static func parse(_ uri: String) throws -> StdioTarget {
        if uri.isEmpty { return StdioTarget(kind: .none) }
        if uri.hasPrefix("binary://") {
            throw ShimError(.unimplemented, "stdio logger \(uri.prefix(200)) is not supported by rund: use FIFOs or file://")
        }
        let (kind, rest): (String, Substring) =
            uri.hasPrefix("file://")
            ? ("file", uri.dropFirst(7))
            : uri.hasPrefix("fifo://") ? ("fifo", uri.dropFirst(7)) : ("fifo", Substring(uri))
        let path = String(rest.prefix { $0 != "?" })
        guard path.hasPrefix("/"), !path.utf8.contains(0) else {
            throw ShimError(.invalidArgument, "stdio path \(uri.prefix(200)) is not absolute")
        }
        return StdioTarget(kind: kind == "file" ? .file(path) : .fifo(path))
    }
}

/// The host side of one process's stdio: descriptors opened at Create/Exec, output copied from
/// the guest on two OS threads (blocking reads from the agent, blocking writes to the FIFOs, so
/// a slow reader slows the process rather than filling memory), and the proof that all of it
/// was delivered before the exit is reported.
final class ProcessIO: Sendable {
    let stdinPath: String
    let stdoutPath: String
    let stderrPath: String
    let terminal: Bool
    /// The stdin FIFO opened for reading and writing: the pump never sees an end of file of its
    /// own (ctr's CloseIO says when stdin ends), and opening it never blocks.
    let stdin: FileDescriptor?
    private let stdout: FileDescriptor?
    private let stderr: FileDescriptor?
    private let copiers = Mutex<[OSThread]>([])
    private let drained = Mutex(false)
    /// Ends writes that wait for a reader that does not read (the task is being deleted).
    private let stopWriting: EventFD

    init(stdin: String, stdout: String, stderr: String, terminal: Bool) throws {
        stdinPath = stdin
        stdoutPath = stdout
        stderrPath = stderr
        self.terminal = terminal
        stopWriting = try EventFD()
        self.stdin = try Self.openInput(try StdioTarget.parse(stdin))
        let out = try Self.openOutput(try StdioTarget.parse(stdout))
        self.stdout = out
        // With a terminal, stderr is merged into stdout by the guest; the same target twice
        // (a log file) shares one descriptor.
        self.stderr = terminal || (stderr == stdout && !stderr.isEmpty) ? nil : try Self.openOutput(try StdioTarget.parse(stderr))
    }

    static func openInput(_ target: StdioTarget) throws -> FileDescriptor? {
        switch target.kind {
        case .none: return nil
        case .file(let path): throw ShimError(.invalidArgument, "stdin cannot be a file:// URI (\(path.prefix(200)))")
        case .fifo(let path):
            do {
                return try FileDescriptor.open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
            } catch {
                throw ShimError(.failedPrecondition, "cannot open the stdin FIFO: \(error)")
            }
        }
    }

    static func openOutput(_ target: StdioTarget) throws -> FileDescriptor? {
        switch target.kind {
        case .none: return nil
        case .file(let path):
            if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
                try FileSystem.makeDirectories(String(path[..<slash]), mode: 0o755)
            }
            return try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode: 0o644)
        case .fifo(let path):
            // Read-write, as runc's shim does: the client's reader may not be open yet (ctr
            // opens it asynchronously), and one that goes away (a containerd restart) gets the
            // output when it comes back instead of this end failing with EPIPE. Writes wait for
            // room (backpressure) unless the task is being deleted.
            do {
                return try FileDescriptor.open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
            } catch {
                throw ShimError(.failedPrecondition, "cannot open the output FIFO: \(error)")
            }
        }
    }

    /// Starts copying the process's outputs from the guest; each copier reads its stream to
    /// the end (the agent reports the exit only then), writing what it can. Each writes to a
    /// duplicate of its target that it closes itself, so `close` never has to wait for a copier
    /// a hostile agent keeps reading (no end of stream), and no write can reach a reused number.
    func startCopying(from container: SandboxContainer, execID: String, logger: Logger) throws {
        for (which, target) in [(SandboxOutput.stdout, stdout), (.stderr, stderr ?? (terminal ? nil : stdout))] {
            let stop = stopWriting.descriptor
            let own = try target.map { try FileDescriptor.duplicate($0.rawValue) }
            do {
                let thread = try OSThread.spawn(name: which == .stdout ? "stdout" : "stderr") {
                    Self.copy(container, execID: execID, which, to: own, stop: stop, logger: logger)
                    own?.close()
                }
                copiers.withLock { $0.append(thread) }
            } catch {
                own?.close()
                throw error
            }
        }
    }

    static func copy(
        _ container: SandboxContainer, execID: String, _ which: SandboxOutput, to target: FileDescriptor?,
        stop: FileDescriptor, logger: Logger
    ) {
        var writable = target != nil
        while true {
            let chunk: (bytes: [UInt8], ended: Bool)
            do {
                chunk = try container.readOutputBlocking(execID: execID, which)
            } catch {
                logger.debug("output of \(execID.isEmpty ? "the main process" : execID) ended: \(error)")
                return
            }
            if writable, let target, !chunk.bytes.isEmpty {
                do {
                    try write(chunk.bytes, to: target, stop: stop)
                } catch {
                    // The reader went away: the rest is read (so the process can go on) and dropped.
                    logger.info("dropping the rest of \(which) of \(execID.isEmpty ? "the main process" : execID): \(error)")
                    writable = false
                }
            }
            if chunk.ended { return }
        }
    }

    /// Writes all of `bytes`, waiting for room, unless `stop` is signalled first.
    static func write(_ bytes: [UInt8], to target: FileDescriptor, stop: FileDescriptor) throws {
        var done = 0
        while done < bytes.count {
            do {
                done += try bytes.withUnsafeBytes { try target.writeSome(UnsafeRawBufferPointer(rebasing: $0[done...])) }
            } catch let error as SystemError where error.errno == EAGAIN {
                guard try target.waitWritable(or: stop) else { throw ShimError("the task is being deleted") }
            }
        }
    }

    /// Waits (at most `limit`) for both copiers to reach the end of their streams. True when
    /// they did: all output was delivered.
    func waitDrained(within limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while true {
            if joinIfEnded() { return true }
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Joins the copiers if both have ended (once; later calls say whether they had).
    private func joinIfEnded() -> Bool {
        drained.withLock { drained in
            if drained { return true }
            let threads = copiers.withLock { $0 }
            guard threads.allSatisfy(\.hasEnded) else { return false }
            for thread in threads { thread.join() }
            drained = true
            return true
        }
    }

    /// Closes the host's ends (the client sees end of file on its FIFOs once the copiers' own
    /// duplicates close too). Waits a moment for the copiers (their process exited, or the
    /// sandbox's VM is gone, so their streams end); one a hostile agent keeps going ends with the
    /// agent's connection and is left to do so.
    func close() {
        try? stopWriting.signal()
        for _ in 0..<200 where !joinIfEnded() { usleep(10_000) }
        stdout?.close()
        stderr?.close()
        stdin?.close()
    }

    /// Closes the output ends once the copiers are over, so the client's readers see end of
    /// file. False (nothing closed) while a copier still runs.
    func closeOutputs() -> Bool {
        guard joinIfEnded() else { return false }
        stdout?.close()
        stderr?.close()
        return true
    }
}
