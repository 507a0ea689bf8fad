#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS
import Synchronization
import VMM

/// Signals, terminal resizes and stops for one sandbox, from any thread: `rund run`'s signal
/// thread, the shim's Kill and Delete. A signal sent before the process started is delivered as
/// soon as it has; a stop asked for before the VM exists stops it as soon as it does.
public final class SandboxControl: Sendable {
    /// Why the host ended the sandbox itself rather than waiting for its process.
    public enum Stop: Sendable, Equatable {
        /// `signal` went to the process, and the sandbox had not ended `grace` later.
        case graceExpired(signal: Int32, grace: Duration)
        /// Stopped at once on request (a second signal, a shim's Delete).
        case immediate(signal: Int32)

        /// The signal the sandbox is reported as ended by (its exit status is 128 + it).
        public var signal: Int32 {
            switch self {
            case .graceExpired(let signal, _), .immediate(let signal): signal
            }
        }
    }

    private struct State {
        var client: AgentClient?
        var containerID = ""
        var pending: [Int32] = []
        var hasTerminal = false
        var pendingSize: WindowSize?
        var machine: Machine?
        var stop: Stop?
        var terminating = false
        var ended = false
        var graceTimer: GraceTimer?
    }
    private let state = Mutex(State())

    public init() {}

    /// Delivers `signal` to the process (and nothing else).
    public func send(_ signal: Int32) {
        let ready: (AgentClient, String)? = state.withLock { state in
            guard let client = state.client else {
                state.pending.append(signal)
                return nil
            }
            return (client, state.containerID)
        }
        if let (client, id) = ready { Self.deliver(signal, client: client, containerID: id) }
    }

    /// What `docker stop` does: the first call delivers `signal` to the process and stops the VM
    /// if the sandbox has not ended `grace` later; any later call stops the VM at once. A guest
    /// that ignores the signal, or never answers at all, cannot keep the sandbox alive.
    public func terminate(_ signal: Int32, grace: Duration) {
        let first = state.withLock { state -> Bool in
            defer { state.terminating = true }
            return !state.terminating && !state.ended
        }
        guard first else {
            stop(.immediate(signal: signal))
            return
        }
        send(signal)
        // Without a thread to count the grace period down, waiting could be forever: stop now.
        guard let timer = GraceTimer(grace, expired: { [weak self] in self?.stop(.graceExpired(signal: signal, grace: grace)) }) else {
            stop(.graceExpired(signal: signal, grace: .zero))
            return
        }
        let late = state.withLock { state -> Bool in
            if state.ended { return true }
            state.graceTimer = timer
            return false
        }
        if late { timer.cancel() }
    }

    /// Stops the sandbox's VM now: its vCPUs stop and the agent connection closes, so the
    /// sandbox's run ends (reporting `stop`) and releases everything it holds.
    public func stop(_ stop: Stop) {
        let (machine, client) = state.withLock { state -> (Machine?, AgentClient?) in
            guard state.stop == nil, !state.ended else { return (nil, nil) }
            state.stop = stop
            return (state.machine, state.client)
        }
        machine?.stop(signal: stop.signal)
        client?.connection.close()
    }

    /// Why the host stopped the sandbox, if it did.
    public var stopped: Stop? { state.withLock { $0.stop } }

    /// The host terminal's window changed: the process's terminal follows (when it has one).
    public func resize(to size: WindowSize) {
        let ready: (AgentClient, String)? = state.withLock { state in
            guard let client = state.client else {
                state.pendingSize = size
                return nil
            }
            return state.hasTerminal ? (client, state.containerID) : nil
        }
        if let (client, id) = ready { Self.deliver(size, client: client, containerID: id) }
    }

    // MARK: the sandbox's side

    /// The VM exists: a stop asked for earlier applies now.
    func attach(_ machine: Machine) {
        let stop = state.withLock { state -> Stop? in
            state.machine = machine
            return state.stop
        }
        if let stop { machine.stop(signal: stop.signal) }
    }

    /// Called once the main process runs: later signals go straight to it.
    func started(client: AgentClient, containerID: String, hasTerminal: Bool = false) {
        let (pending, size, stop) = state.withLock { state in
            state.client = client
            state.containerID = containerID
            state.hasTerminal = hasTerminal
            defer { state.pending = []; state.pendingSize = nil }
            return (state.pending, state.pendingSize, state.stop)
        }
        if stop != nil {
            client.connection.close()
            return
        }
        for signal in pending { Self.deliver(signal, client: client, containerID: containerID) }
        if hasTerminal, let size { Self.deliver(size, client: client, containerID: containerID) }
    }

    /// The sandbox's run is over: a pending grace period ends without stopping anything, and
    /// nothing here refers to the VM or the agent any more.
    func ended() {
        let timer = state.withLock { state -> GraceTimer? in
            state.ended = true
            state.machine = nil
            state.client = nil
            defer { state.graceTimer = nil }
            return state.graceTimer
        }
        timer?.cancel()
    }

    private static func deliver(_ signal: Int32, client: AgentClient, containerID: String) {
        Task {
            _ = try? await client.signalProcess(
                .with {
                    $0.process = .with { $0.containerID = containerID }
                    $0.signal = signal
                }, timeout: .seconds(5))
        }
    }

    private static func deliver(_ size: WindowSize, client: AgentClient, containerID: String) {
        Task {
            _ = try? await client.resizeTerminal(
                .with {
                    $0.process = .with { $0.containerID = containerID }
                    $0.size = AgentWindowSize(size)
                }, timeout: .seconds(5))
        }
    }
}

/// Runs `expired` on its own thread once `duration` has passed, unless cancelled first. A plain
/// thread, not a task: a stop must come even when the concurrency pool is busy or blocked.
final class GraceTimer: Sendable {
    private let cancelled: EventFD
    private let thread: OSThread

    init?(_ duration: Duration, expired: @escaping @Sendable () -> Void) {
        guard let cancelled = try? EventFD() else { return nil }
        let milliseconds = Int32(clamping: duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
        guard
            let thread = try? OSThread.spawn(
                name: "stop-grace",
                {
                    if (try? cancelled.descriptor.waitReadable(milliseconds: milliseconds)) != true { expired() }
                })
        else { return nil }
        self.cancelled = cancelled
        self.thread = thread
    }

    /// Stops the countdown (if still running) and waits for the thread.
    func cancel() {
        try? cancelled.signal()
        thread.join()
    }
}
