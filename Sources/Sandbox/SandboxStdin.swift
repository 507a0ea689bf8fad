#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import FoundationEssentials  // Data: SwiftProtobuf's type for bytes fields
import HostOS
import Synchronization

/// Copies a host descriptor (rund's stdin) to the sandbox process's stdin: WriteStdin chunks,
/// CloseStdin at end of file. Runs on its own thread, one chunk in flight at a time, so a
/// process that does not read holds the host side back instead of filling rund's memory.
final class SandboxStdin: Sendable {
    static let chunkSize = 64 << 10

    private let thread: OSThread
    private let stopRequest: EventFD

    /// Starts pumping `input` (rund keeps its own duplicate) to `process` of `client`.
    init(input: Int32, client: AgentClient, process: AgentProcessRef) throws {
        let source = try FileDescriptor.duplicate(input)
        let stopRequest = try EventFD()
        self.stopRequest = stopRequest
        thread = try OSThread.spawn(name: "stdin") {
            Self.pump(source, stop: stopRequest.descriptor, client: client, process: process)
            source.close()
        }
    }

    /// Stops reading. Returns at once; `join` waits for the thread, whose write in flight ends
    /// when the process has exited or the agent connection has closed.
    func stop() {
        try? stopRequest.signal()
    }

    func join() {
        thread.join()
    }

    private static func pump(_ input: FileDescriptor, stop: FileDescriptor, client: AgentClient, process: AgentProcessRef) {
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        while (try? input.waitReadable(or: stop)) == true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { try input.read(into: $0) }
            } catch let error as SystemError where error.errno == EAGAIN {
                continue  // A non-blocking input that poll woke for nothing.
            } catch {
                count = 0  // An unreadable input counts as its end.
            }
            if count == 0 {
                _ = try? client.closeStdinBlocking(.with { $0.process = process })
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

/// Where a run keeps its stdin pump, so the teardown that stops the VM can stop it too.
final class SandboxStdinSlot: Sendable {
    private let pump = Mutex<SandboxStdin?>(nil)

    func start(_ stdin: SandboxStdin) {
        pump.withLock { $0 = stdin }
    }

    func stop() {
        pump.withLock { $0 }?.stop()
    }

    func join() {
        pump.withLock { $0 }?.join()
    }
}
