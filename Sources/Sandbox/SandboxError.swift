import VMM

/// A sandbox step that failed, as one line that says what went wrong.
public struct SandboxError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        case failed
        /// The sandbox could not be given its cgroup, and running unconfined was not allowed.
        case cannotConfine
        /// The guest agent did not answer, or its connection broke (the guest's console says why).
        case agentUnresponsive
        /// The guest agent's executable is not where the sandbox was told to find it.
        case agentMissing
        /// Neither the spec nor the image config names a command to run.
        case noCommand
        /// The cached guest kernel is incomplete (its modules or their list).
        case kernelCacheBroken
    }

    public let kind: Kind
    public let description: String

    public init(_ description: String) {
        self.init(.failed, description)
    }

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = kind == .cannotConfine ? "the sandbox cannot be confined: \(description)" : description
    }
}

extension SandboxError {
    /// The guest ended while the process ran: "the guest kernel panicked: Kernel panic - ...".
    init(guestEnded reason: MachineExit) {
        switch reason {
        case .guestPanicked, .crashed, .stalled, .confinementBroken: self.init("the \(reason)")
        case .poweredOff, .rebooted: self.init("the \(reason) before the process ended")
        case .stoppedBySignal: self.init("the VM was stopped before the process ended")
        }
    }
}
