import AgentProtocol
import HostOS
import Synchronization

/// Signals and terminal resizes for a sandbox's main process, from any thread (e.g. rund's
/// SIGTERM/SIGINT/SIGWINCH handler). One sent before the process started is delivered as soon
/// as it has.
public final class SandboxSignals: Sendable {
    private struct Target {
        var client: AgentClient?
        var containerID = ""
        var pending: [Int32] = []
        var hasTerminal = false
        var pendingSize: WindowSize?
    }
    private let target = Mutex(Target())

    public init() {}

    public func send(_ signal: Int32) {
        let ready: (AgentClient, String)? = target.withLock { target in
            guard let client = target.client else {
                target.pending.append(signal)
                return nil
            }
            return (client, target.containerID)
        }
        if let (client, id) = ready { Self.deliver(signal, client: client, containerID: id) }
    }

    /// The host terminal's window changed: the process's terminal follows (when it has one).
    public func resize(to size: WindowSize) {
        let ready: (AgentClient, String)? = target.withLock { target in
            guard let client = target.client else {
                target.pendingSize = size
                return nil
            }
            return target.hasTerminal ? (client, target.containerID) : nil
        }
        if let (client, id) = ready { Self.deliver(size, client: client, containerID: id) }
    }

    /// Called once the main process runs: later signals go straight to it.
    func started(client: AgentClient, containerID: String, hasTerminal: Bool = false) {
        let (pending, size) = target.withLock { target in
            target.client = client
            target.containerID = containerID
            target.hasTerminal = hasTerminal
            defer { target.pending = []; target.pendingSize = nil }
            return (target.pending, target.pendingSize)
        }
        for signal in pending { Self.deliver(signal, client: client, containerID: containerID) }
        if hasTerminal, let size { Self.deliver(size, client: client, containerID: containerID) }
    }

    private static func deliver(_ signal: Int32, client: AgentClient, containerID: String) {
        Task {
            _ = try? await client.signalProcess(.with {
                $0.process = .with { $0.containerID = containerID }
                $0.signal = signal
            }, timeout: .seconds(5))
        }
    }

    private static func deliver(_ size: WindowSize, client: AgentClient, containerID: String) {
        Task {
            _ = try? await client.resizeTerminal(.with {
                $0.process = .with { $0.containerID = containerID }
                $0.size = AgentWindowSize(size)
            }, timeout: .seconds(5))
        }
    }
}
