import VMM

/// A sandbox step that failed, as one line that says what to do.
public struct SandboxError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension SandboxError {
    /// The guest ended while the process ran: "the guest kernel panicked: Kernel panic - ...".
    init(guestEnded reason: MachineExit) {
        switch reason {
        case .guestPanicked, .crashed: self.init("the \(reason)")
        case .poweredOff, .rebooted: self.init("the \(reason) before the process ended")
        case .stoppedBySignal: self.init("the VM was stopped before the process ended")
        }
    }
}
