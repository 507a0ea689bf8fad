import Synchronization

/// State behind a lock that async callers can wait on without holding a thread: `wait` suspends
/// until `update` makes its condition true (or the task is cancelled). The agent's handlers run
/// on the small Swift pool, so none of them may block a thread while waiting for a process.
final class Monitor<State: Sendable>: Sendable {
    private struct Guarded: Sendable {
        var state: State
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let guarded: Mutex<Guarded>

    init(_ initial: State) {
        guarded = Mutex(Guarded(state: initial))
    }

    /// Changes the state and wakes every waiter to re-check its condition.
    func update<R>(_ body: (inout State) -> R) -> R {
        let (result, woken) = guarded.withLock { guarded in
            let result = body(&guarded.state)
            let woken = Array(guarded.waiters.values)
            guarded.waiters.removeAll()
            return (result, woken)
        }
        for waiter in woken { waiter.resume() }
        return result
    }

    func read<R>(_ body: (State) -> R) -> R {
        guarded.withLock { body($0.state) }
    }

    /// Suspends until `take` returns a value (it may change the state as it does); throws
    /// `CancellationError` when the task is cancelled first.
    func wait<R>(_ take: (inout State) -> R?) async throws -> R {
        while true {
            try Task.checkCancellation()
            let id = guarded.withLock { guarded in
                guarded.nextWaiter += 1
                return guarded.nextWaiter
            }
            var taken: R?
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    // Check and register under one lock hold, so no update slips in between.
                    let resumeNow = guarded.withLock { guarded -> Bool in
                        if let value = take(&guarded.state) {
                            taken = value
                            return true
                        }
                        if Task.isCancelled { return true }
                        guarded.waiters[id] = continuation
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
            } onCancel: {
                guarded.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
            }
            if let taken { return taken }
        }
    }
}
