import HostOS
import Synchronization

/// The steps of one `Sandbox.run`, in order. Each lasts until the next one begins; the last
/// until `run` returns.
public enum SandboxPhase: String, CaseIterable, Codable, Sendable {
    /// Image lookup, the process spec, the cached guest initramfs.
    case prepare
    case cgroup
    case writableLayer = "writable-layer"
    /// Building the machine: guest memory, kernel and initramfs loaded, devices, vCPUs.
    case vmCreate = "vm-create"
    /// vCPUs started → the agent's boot-marker write, which it makes once it listens on vsock.
    case kernelBoot = "kernel-boot"
    /// → the host's vsock connect to the agent answered (retried every 100 ms while refused).
    case agentReady = "agent-ready"
    /// CreateContainer and StartProcess.
    case processStart = "process-start"
    /// → both outputs drained and Wait returned.
    case exit
    /// Shutdown, the VM's end, writable layer and cgroup released.
    case teardown
}

/// Timestamps the phase boundaries of one `Sandbox.run` (for `rund bench run`). Pass a fresh
/// one to `run`, read `durations` after it returns.
public final class SandboxPhaseRecorder: Sendable {
    private struct Marks {
        var starts: [SandboxPhase: UInt64] = [:]
        var end: UInt64?
    }

    private let marks = Mutex(Marks())

    public init() {}

    /// `phase` begins at `time` (CLOCK_MONOTONIC nanoseconds, default now).
    public func begin(_ phase: SandboxPhase, at time: UInt64 = MonotonicNanoseconds.now()) {
        marks.withLock { $0.starts[phase] = time }
    }

    /// The agent-ready phase began at the boot marker, `elapsed` nanoseconds after the machine's
    /// construction began (vm-create's start); nil when the guest never wrote the marker.
    /// The agent writes the marker just after it starts listening, so the host's connect can
    /// still be answered first: then agent-ready is empty and kernel-boot ends at the connect.
    public func bootMarker(elapsedSinceVMCreate elapsed: UInt64?) {
        marks.withLock { marks in
            guard let elapsed, let vmCreate = marks.starts[.vmCreate] else { return }
            let marker = vmCreate + elapsed
            marks.starts[.agentReady] = marks.starts[.processStart].map { min(marker, $0) } ?? marker
        }
    }

    /// The last phase ends now.
    public func finish(at time: UInt64 = MonotonicNanoseconds.now()) {
        marks.withLock { $0.end = time }
    }

    /// Nanoseconds per phase once the run finished, or why there are none (a phase never
    /// began, or boundaries out of order).
    public func durations() throws -> [SandboxPhase: UInt64] {
        let marks = marks.withLock { $0 }
        guard let end = marks.end else { throw SandboxError("the sandbox run has not finished") }
        var starts: [UInt64] = []
        for phase in SandboxPhase.allCases {
            guard let start = marks.starts[phase] else {
                if phase == .agentReady {
                    throw SandboxError(
                        "the guest agent wrote no boot marker (it needs /dev/mem), so kernel boot and agent ready cannot be split")
                }
                throw SandboxError("the sandbox run never reached its \(phase.rawValue) phase")
            }
            starts.append(start)
        }
        var result: [SandboxPhase: UInt64] = [:]
        for (index, phase) in SandboxPhase.allCases.enumerated() {
            let next = index + 1 < starts.count ? starts[index + 1] : end
            guard next >= starts[index] else {
                throw SandboxError("the \(phase.rawValue) phase ends before it begins: boundaries out of order")
            }
            result[phase] = next - starts[index]
        }
        return result
    }
}
