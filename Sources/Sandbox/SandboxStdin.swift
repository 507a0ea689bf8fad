#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import FoundationEssentials  // Data: SwiftProtobuf's type for bytes fields
import HostOS
import Synchronization

/// Copies a host descriptor (rund's stdin, a containerd stdin FIFO) to a sandbox process's
/// stdin: WriteStdin chunks, CloseStdin at end of file or on `finish`. Runs on its own thread,
/// one chunk in flight at a time, so a process that does not read holds the host side back
/// instead of filling the host's memory.
final class SandboxStdin: Sendable {
    static let chunkSize = 64 << 10

    private let thread: OSThread
    private let stopRequest: EventFD
    private let finishRequest: EventFD

    /// Starts pumping `input` (the caller keeps its own descriptor; this takes a duplicate) to
    /// `process` of `client`.
    init(input: Int32, client: AgentClient, process: AgentProcessRef) throws {
        let source = try FileDescriptor.duplicate(input)
        let stopRequest = try EventFD()
        let finishRequest = try EventFD()
        self.stopRequest = stopRequest
        self.finishRequest = finishRequest
        thread = try OSThread.spawn(name: "stdin") {
            Self.pump(source, stop: stopRequest.descriptor, finish: finishRequest.descriptor, client: client, process: process)
            source.close()
        }
    }

    /// Stops reading. Returns at once; `join` waits for the thread, whose write in flight ends
    /// when the process has exited or the agent connection has closed.
    func stop() {
        try? stopRequest.signal()
    }

    /// The input's writer is done (containerd's CloseIO): what the input holds now still goes
    /// to the process, then its stdin is closed. For inputs that never reach end of file by
    /// themselves (a FIFO the host also holds open for writing).
    func finish() {
        try? finishRequest.signal()
    }

    func join() {
        thread.join()
    }

    private static func pump(
        _ input: FileDescriptor, stop: FileDescriptor, finish: FileDescriptor,
        client: AgentClient, process: AgentProcessRef
    ) {
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var finishing = false
        while true {
            if finishing {
                // Only what is there already: an empty input is its end now.
                guard (try? stop.waitReadable(milliseconds: 0)) == false else { return }
                if (try? input.waitReadable(milliseconds: 0)) != true {
                    _ = try? client.closeStdinBlocking(.with { $0.process = process }, timeout: .seconds(10))
                    return
                }
            } else {
                switch try? input.waitReadable(orEither: stop, finish) {
                case .first?: break
                case .third?: finishing = true; continue
                case .second?, nil: return
                }
            }
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { try input.read(into: $0) }
            } catch let error as SystemError where error.errno == EAGAIN {
                if finishing { count = 0 } else { continue }  // A non-blocking input that poll woke for nothing.
            } catch {
                count = 0  // An unreadable input counts as its end.
            }
            if count == 0 {
                _ = try? client.closeStdinBlocking(.with { $0.process = process }, timeout: .seconds(10))
                return
            }
            let request = AgentWriteStdinRequest.with {
                $0.process = process
                $0.data = Data(buffer[0..<count])
            }
            // Stop when the process closed its stdin or exited, or the guest is gone.
            guard let answer = try? client.writeStdinBlocking(request), answer.written == UInt32(count) else { return }
        }
    }
}

/// A sandbox's stdin pumps by process ("container/exec id", the exec id "" for a container's
/// main process), so the teardown that stops the VM can stop them too.
final class SandboxStdinPumps: Sendable {
    private let pumps = Mutex<[String: SandboxStdin]>([:])

    func start(_ pump: SandboxStdin, process: String) {
        let replaced = pumps.withLock { $0.updateValue(pump, forKey: process) }
        replaced?.stop()
        replaced?.join()
    }

    func finish(process: String) -> Bool {
        guard let pump = pumps.withLock({ $0[process] }) else { return false }
        pump.finish()
        return true
    }

    /// Stops and joins one process's pump (its process is gone).
    func remove(process: String) {
        guard let pump = pumps.withLock({ $0.removeValue(forKey: process) }) else { return }
        pump.stop()
        pump.join()
    }

    /// The exec ids of a container's processes that have a pump.
    func processes(ofContainer containerID: String) -> [String] {
        let prefix = containerID + "/"
        return pumps.withLock { $0.keys.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) } }
    }

    func stopAll() {
        for pump in pumps.withLock({ Array($0.values) }) { pump.stop() }
    }

    func joinAll() {
        for pump in pumps.withLock({ pumps in
            defer { pumps = [:] }; return Array(pumps.values)
        }) { pump.join() }
    }
}
