import Synchronization

/// What a sandbox has taken, as release steps run in reverse order of taking: by `create` when
/// it fails part-way, and by the sandbox's own release. Runs once; later calls do nothing.
final class SandboxTeardown: Sendable {
    private let steps = Mutex<[@Sendable () -> Void]?>([])

    /// Adds a step that runs before every step added earlier.
    func push(_ step: @escaping @Sendable () -> Void) {
        let ran = steps.withLock { steps -> Bool in
            guard steps != nil else { return true }
            steps!.append(step)
            return false
        }
        // Taken after the teardown ran (a race with a stop): release it at once.
        if ran { step() }
    }

    /// Runs every step, newest first. Returns false if the teardown had already run.
    @discardableResult
    func run() -> Bool {
        guard
            let taken = steps.withLock({ steps -> [@Sendable () -> Void]? in
                defer { steps = nil }; return steps
            })
        else {
            return false
        }
        for step in taken.reversed() { step() }
        return true
    }
}
