import AgentProtocol
import Sandbox
import SwiftProtobuf
import Synchronization

/// How and when a task process ended.
struct ExitRecord: Sendable, Equatable {
    var status: UInt32
    var at: Google_Protobuf_Timestamp
}

/// One process of a task: the main one (exec id "") or an exec. Its state is the shim's own,
/// so State and Wait answer from the host without asking the guest.
final class TaskProcess: Sendable {
    let execID: String
    let io: ProcessIO
    /// For execs: what to run (the main process's is in the sandbox).
    let spec: AgentProcessSpec?

    struct State {
        var status: Containerd_V1_Types_Status = .created
        var guestPID: UInt32 = 0
        var exit: ExitRecord?
        var waiters: [CheckedContinuation<ExitRecord, Never>] = []
    }

    private let state = Mutex(State())

    init(execID: String, io: ProcessIO, spec: AgentProcessSpec? = nil) {
        self.execID = execID
        self.io = io
        self.spec = spec
    }

    var snapshot: State { state.withLock { $0 } }

    func update(_ change: (inout State) -> Void) {
        state.withLock { change(&$0) }
    }

    /// Moves created → running; false when the process is not in the created state (a second
    /// Start, or one after it was stopped).
    func markStarting() -> Bool {
        state.withLock { state in
            guard state.status == .created, state.exit == nil else { return false }
            state.status = .running
            return true
        }
    }

    /// Records the exit (the first one wins) and wakes every waiter. True for the first.
    @discardableResult
    func recordExit(_ record: ExitRecord) -> Bool {
        let waiters = state.withLock { state -> [CheckedContinuation<ExitRecord, Never>]? in
            guard state.exit == nil else { return nil }
            state.exit = record
            state.status = .stopped
            defer { state.waiters = [] }
            return state.waiters
        }
        guard let waiters else { return false }
        for waiter in waiters { waiter.resume(returning: record) }
        return true
    }

    /// Suspends until the process has exited (at once if it has).
    func waitForExit() async -> ExitRecord {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> ExitRecord? in
                if let exit = state.exit { return exit }
                state.waiters.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }
}

/// One container of the shim: its sandbox (the VM, shared by a pod's containers), its
/// container in it, main process, execs and event order.
final class ShimTask: Sendable {
    let id: String
    let bundle: String
    let rootfs: [Containerd_Types_Mount]
    let sandbox: RunningSandbox
    let container: SandboxContainer
    let main: TaskProcess
    private let execs = Mutex<[String: TaskProcess]>([:])
    let order = Mutex(TaskEventOrder())

    init(
        id: String, bundle: String, rootfs: [Containerd_Types_Mount], sandbox: RunningSandbox, container: SandboxContainer? = nil,
        main: TaskProcess
    ) {
        self.id = id
        self.bundle = bundle
        self.rootfs = rootfs
        self.sandbox = sandbox
        self.container = container ?? sandbox.main
        self.main = main
    }

    /// A pod's later container: it lives in another task's VM and goes without it.
    var isPodMember: Bool { container !== sandbox.main }

    /// Whether the VM holds more than one container (its containers have cgroups of their own).
    var isInPod: Bool { isPodMember || sandbox.containerSlots > 0 }

    /// The process named by `execID` ("" is the main one).
    func process(_ execID: String) throws -> TaskProcess {
        if execID.isEmpty { return main }
        guard let exec = execs.withLock({ $0[execID] }) else { throw ShimError.notFound("process does not exist \(execID)") }
        return exec
    }

    /// Adds an exec; false when the id is taken.
    func add(_ exec: TaskProcess) -> Bool {
        execs.withLock { execs in
            guard execs[exec.execID] == nil else { return false }
            execs[exec.execID] = exec
            return true
        }
    }

    func remove(execID: String) -> TaskProcess? {
        execs.withLock { $0.removeValue(forKey: execID) }
    }

    var allExecs: [TaskProcess] { execs.withLock { Array($0.values) } }
}
