import AgentProtocol
import HostOS

/// How the sandbox's process ended.
public struct SandboxExit: Sendable, Equatable {
    /// Its exit code, or 128+N when signal N ended it.
    public var processStatus: Int32
    /// The guest's OOM killer fired while it ran (it, or a process it started, was killed).
    public var oomKilled: Bool
    /// The host stopped the VM before the process ended (see `SandboxControl.terminate`).
    public var stoppedByHost: SandboxControl.Stop?

    public init(processStatus: Int32, oomKilled: Bool) {
        self.processStatus = processStatus
        self.oomKilled = oomKilled
    }

    /// The sandbox the host stopped: reported as ended by the stop's signal (128+N), as a
    /// container runtime reports a container it had to kill.
    init(stoppedByHost stop: SandboxControl.Stop) {
        self.init(processStatus: 128 + stop.signal, oomKilled: false)
        stoppedByHost = stop
    }

    /// `AgentClient.waitProcess` has refused answers whose status does not fit 8 bits; the
    /// checked sum keeps this total for any answer all the same (the guest chose `signal`).
    init(_ response: AgentWaitProcessResponse) {
        let (killed, overflow) = Int32(128).addingReportingOverflow(response.signal)
        self.init(
            processStatus: response.signal == 0 ? response.exitCode : (overflow ? .max : killed),
            oomKilled: response.oomKilled)
    }

    /// The process failed because memory ran out: it did not succeed and the OOM killer fired.
    /// (A process that succeeded although a child was killed is left alone.)
    public var diedOfMemoryExhaustion: Bool { oomKilled && processStatus != 0 }

    /// What `rund run` exits with: the process's status, 137 (128+SIGKILL, as for any
    /// OOM-killed container) when memory ran out.
    public var status: Int32 { diedOfMemoryExhaustion ? 137 : processStatus }

    /// The line that explains why the host stopped the sandbox, naming the signal.
    public var stopMessage: String? {
        switch stoppedByHost {
        case .graceExpired(let signal, let grace)?:
            return "the sandbox did not stop within \(Self.seconds(grace)) of \(SignalName.of(signal)): its VM was stopped"
        case .immediate(let signal)?:
            return "the sandbox's VM was stopped at once on \(SignalName.of(signal))"
        case nil:
            return nil
        }
    }

    static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return attoseconds == 0 ? "\(seconds) s" : "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000) ms"
    }

    /// The line that explains an out-of-memory end, naming the sandbox's memory size.
    public func outOfMemoryMessage(memoryMiB: Int) -> String? {
        guard diedOfMemoryExhaustion else { return nil }
        let who = processStatus == 137 ? "the process was killed" : "a process was killed (exit status \(processStatus))"
        return "\(who): the sandbox ran out of memory (\(memoryMiB) MiB)"
    }
}
