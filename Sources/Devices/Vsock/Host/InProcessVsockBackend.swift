import Dispatch
import Synchronization

/// The in-process host end: what `VsockHostEndpoint`, `VsockListener` and `VsockStream` keep
/// beside the connection state machine. Listeners and their backlogs of accepted connections, and
/// the host threads blocked on a connection or a listener. The device's only `VsockBackend`.
///
/// The device calls it under the device lock, and the host-side types call it only from inside
/// `VsockCore.withState`, so a waiter registers under the same lock as the check it waits on and
/// no wakeup is lost. Its own mutex only makes that state safe to share (lock order: device, then
/// this); wakeups are signalled in `deviceUnlocked`, once the device lock is released.
final class InProcessVsockBackend: VsockBackend {
    /// What a blocked host thread waits on.
    enum WaitTarget: Hashable {
        case connection(UInt64)
        case listener(port: UInt32)
    }

    /// Guest connections to one host port, waiting in `backlog` until the host accepts them.
    private struct Listener {
        let id: UInt64
        var backlog: [UInt64] = []
    }

    private struct State {
        var listeners: [UInt32: Listener] = [:]
        var nextListenerID: UInt64 = 1
        /// Threads blocked on each target: the semaphore they sleep on and how many they are.
        var waiters: [WaitTarget: (wakeup: VsockWakeup, count: Int)] = [:]
        /// Wakeups owed once the device lock is released.
        var pending: [(VsockWakeup, Int)] = []
    }

    /// Most accepted connections a listener holds before the guest is refused.
    private let backlogLimit: Int
    private let state = Mutex(State())

    init(backlog: Int) {
        backlogLimit = backlog
    }

    // MARK: VsockBackend (under the device lock)

    func isListening(onPort port: UInt32) -> Bool {
        state.withLock { $0.listeners[port] != nil }
    }

    func canAccept(onPort port: UInt32) -> Bool {
        state.withLock { state in state.listeners[port].map { $0.backlog.count < backlogLimit } ?? false }
    }

    func accepted(_ id: UInt64, onPort port: UInt32) {
        state.withLock { state in
            state.listeners[port]?.backlog.append(id)
            Self.wake(.listener(port: port), &state)
        }
    }

    func connectionChanged(_ id: UInt64) {
        state.withLock { Self.wake(.connection(id), &$0) }
    }

    func takeUnclaimedConnections() -> [UInt64] {
        state.withLock { state in
            var unclaimed: [UInt64] = []
            for port in state.listeners.keys {
                unclaimed += state.listeners[port]?.backlog ?? []
                state.listeners[port]?.backlog.removeAll()
            }
            return unclaimed
        }
    }

    func deviceUnlocked() {
        let pending = state.withLock { state in
            defer { state.pending.removeAll() }
            return state.pending
        }
        for (wakeup, count) in pending { wakeup.signal(count) }
    }

    private static func wake(_ target: WaitTarget, _ state: inout State) {
        guard let waiting = state.waiters.removeValue(forKey: target) else { return }
        state.pending.append((waiting.wakeup, waiting.count))
    }

    // MARK: Listeners (under the device lock, from the host-side types)

    func listen(port: UInt32) throws(VsockError) -> UInt64 {
        try state.withLock { state throws(VsockError) -> UInt64 in
            guard state.listeners[port] == nil else { throw .portInUse(port) }
            let id = state.nextListenerID
            state.nextListenerID += 1
            state.listeners[port] = Listener(id: id)
            return id
        }
    }

    /// The oldest accepted connection on the listener, or nil while there is none.
    func claim(port: UInt32, listener id: UInt64) throws(VsockError) -> UInt64? {
        try state.withLock { state throws(VsockError) -> UInt64? in
            guard let listener = state.listeners[port], listener.id == id else { throw .closed }
            guard !listener.backlog.isEmpty else { return nil }
            return state.listeners[port]?.backlog.removeFirst()
        }
    }

    /// Removes the listener and wakes its blocked `accept` calls; returns the connections it had
    /// not handed out, for the caller to reset.
    func closeListener(port: UInt32, listener id: UInt64) -> [UInt64] {
        state.withLock { state in
            guard let listener = state.listeners[port], listener.id == id else { return [] }
            state.listeners[port] = nil
            Self.wake(.listener(port: port), &state)
            return listener.backlog
        }
    }

    /// Registers the calling thread as a waiter on `target`; it then sleeps on the returned wakeup.
    func waiter(on target: WaitTarget) -> VsockWakeup {
        state.withLock { state in
            var waiting = state.waiters[target] ?? (VsockWakeup(), 0)
            waiting.count += 1
            state.waiters[target] = waiting
            return waiting.wakeup
        }
    }
}

/// Wakes host threads blocked on one connection or listener. Waiters register under the
/// device lock before they sleep, and the semaphore counts signals, so no wakeup is lost.
final class VsockWakeup: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)

    func signal(_ count: Int) {
        for _ in 0..<count { semaphore.signal() }
    }

    /// False when `deadline` passed first.
    func wait(until deadline: DispatchTime) -> Bool {
        semaphore.wait(timeout: deadline) == .success
    }
}

extension VsockCore {
    /// Repeats `attempt` under the device lock until it returns a value; while it returns nil the
    /// calling thread registers (under the same lock) as a waiter on `target` and sleeps until
    /// woken or the timeout (nil: none) passes.
    func waitFor<R>(
        _ operation: String, on target: InProcessVsockBackend.WaitTarget, with host: InProcessVsockBackend,
        timeout: Duration?, _ attempt: (inout VsockConnections) throws(VsockError) -> R?
    ) throws(VsockError) -> R {
        let deadline = Self.deadline(after: timeout)
        while true {
            let (result, wakeup) = try withState(delivering: true) {
                (state: inout VsockConnections) throws(VsockError) -> (R?, VsockWakeup?) in
                if let result = try attempt(&state) { return (result, nil) }
                return (nil, host.waiter(on: target))
            }
            if let result { return result }
            guard let wakeup else { throw .closed }
            if !wakeup.wait(until: deadline) {
                // One last look: the event may have raced the deadline.
                let late = try withState(delivering: true, attempt)
                if let late { return late }
                throw .timedOut(operation: operation)
            }
        }
    }

    /// A dispatch deadline `timeout` from now; nil means forever.
    private static func deadline(after timeout: Duration?) -> DispatchTime {
        guard let timeout else { return .distantFuture }
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = max(0, seconds) &* 1_000_000_000 &+ max(0, attoseconds) / 1_000_000_000
        return .now() + .nanoseconds(Int(clamping: nanoseconds))
    }
}
