import AgentProtocol
import Synchronization

/// Signals for a sandbox's main process, from any thread (e.g. rund's SIGTERM/SIGINT handler).
/// One sent before the process started is delivered as soon as it has.
public final class SandboxSignals: Sendable {
    private struct Target {
        var client: AgentClient?
        var containerID = ""
        var pending: [Int32] = []
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

    /// Called once the main process runs: later signals go straight to it.
    func started(client: AgentClient, containerID: String) {
        let pending = target.withLock { target in
            target.client = client
            target.containerID = containerID
            defer { target.pending = [] }
            return target.pending
        }
        for signal in pending { Self.deliver(signal, client: client, containerID: containerID) }
    }

    private static func deliver(_ signal: Int32, client: AgentClient, containerID: String) {
        Task {
            _ = try? await client.signalProcess(.with {
                $0.process = .with { $0.containerID = containerID }
                $0.signal = signal
            }, timeout: .seconds(5))
        }
    }
}
