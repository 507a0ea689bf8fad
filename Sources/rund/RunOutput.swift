#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Sandbox
import Synchronization

/// rund's stdout and stderr as the sandbox process's. When a reader goes away (EPIPE: `rund run
/// ... | head -1`), the process gets SIGPIPE as it would in a local pipeline, and rund drops the
/// rest of that stream instead of dying of SIGPIPE with the host terminal still raw.
final class RunOutput: Sendable {
    private let standardOutput: FileDescriptor
    private let standardError: FileDescriptor
    private let broken = Mutex<Set<Int32>>([])
    private let control: SandboxControl

    /// Call once per process: it makes SIGPIPE ignored.
    init(control: SandboxControl) throws {
        SignalForwarder.ignore(SIGPIPE)
        standardOutput = try FileDescriptor.duplicate(1)
        standardError = try FileDescriptor.duplicate(2)
        self.control = control
    }

    func write(_ stream: SandboxOutput, _ bytes: [UInt8]) {
        let target = stream == .stdout ? standardOutput : standardError
        guard !broken.withLock({ $0.contains(target.rawValue) }) else { return }
        do {
            try target.writeAll(bytes)
        } catch {
            broken.withLock { _ = $0.insert(target.rawValue) }
            if let error = error as? SystemError, error.errno == EPIPE { control.send(SIGPIPE) }
        }
    }
}
