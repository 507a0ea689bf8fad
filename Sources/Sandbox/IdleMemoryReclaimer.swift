import Logging
import Synchronization

/// How an idle sandbox's memory goes back to the host (`rund run --reclaim-idle-by`).
public enum IdleReclaimMethod: String, Codable, Sendable, CaseIterable {
    /// The default. The agent writes back and drops the guest's page cache; free page reporting
    /// returns the freed runs (of 128 KiB and more, `FreePageReporting`). Touches nothing the
    /// guest was not using, and the guest keeps its free memory for when it wakes.
    case cache
    /// The balloon is inflated to all the guest has available. It also takes free runs too
    /// small to report, but writes the `struct page` of every page it takes, which in a
    /// template's clone makes that part of the template's memory map the clone's own (in the
    /// rig, 4 of an idle clone's 10.9 MiB against 1.4 of 7.0 by dropping the cache).
    case balloon
}

/// Takes memory back from a sandbox whose process has gone quiet (`SandboxSpec.reclaimIdleAfter`),
/// once it has printed nothing for `after`, in one of two ways (`IdleReclaimMethod`):
///
/// - cache: the agent drops the guest's page cache once per quiet period; what it frees goes
///   back through free page reporting, and the guest needs nothing back when it wakes.
/// - balloon: the balloon is inflated to all the guest has available (MemAvailable, page cache
///   included), so those pages go back to the host; once the guest has settled, the balloon
///   gives a reserve back. Its next output deflates the balloon again. A guest that needs
///   memory while inflated takes pages back itself (the balloon deflates on OOM): the process
///   is slowed, never killed.
final class IdleMemoryReclaimer: Sendable {
    private let sandbox: RunningSandbox
    private let after: Duration
    private let method: IdleReclaimMethod
    private let logger: Logger
    private let state: Mutex<State>

    struct State {
        var lastActivity: ContinuousClock.Instant
        /// Bumped by every activity: a reclaim decided before it must not inflate after it.
        var generation: UInt64 = 0
        /// MiB asked of the guest while idle (nil: the balloon is down).
        var asked: Int?
        /// When to look whether the guest is still filling the balloon.
        var settleAt: ContinuousClock.Instant?
        /// MiB the guest had given at the last look: while that grows, it is still filling.
        var givenAtLastLook = 0
        /// The guest's caches were dropped in this quiet period (the cache method).
        var cachesDropped = false
    }

    /// How often to look whether the guest is still filling the balloon; once it gives no more,
    /// the target comes down to what it gave less the reserve (a guest that cannot find the
    /// pages would otherwise retry, every 200 ms in Linux, for as long as the sandbox is idle).
    static let settleTime: Duration = .seconds(10)

    /// nil when the sandbox's VM has no balloon (a test hook's): without its free page
    /// reporting, dropped caches would stay with the rund process too.
    init?(_ sandbox: RunningSandbox, after: Duration, method: IdleReclaimMethod, logger: Logger) {
        guard sandbox.hasBalloon else {
            logger.warning("no balloon in this sandbox's VM: idle memory stays with it")
            return nil
        }
        self.sandbox = sandbox
        self.after = after
        self.method = method
        self.logger = logger
        state = Mutex(State(lastActivity: .now))
    }

    /// What the guest keeps available while its balloon is inflated: a thirty-second of its
    /// memory, at least 8 MiB. It is given back after the guest filled the balloon with all it
    /// could (its page cache too), so the reserve is free pages the host does not hold rather
    /// than cache left in place. A woken process that needs more before its first output
    /// (which deflates the balloon) gets it through deflate-on-OOM.
    static func reserveMiB(memoryMiB: Int) -> Int { max(8, memoryMiB / 32) }

    /// MiB to ask of a guest of `memoryMiB` that reports `availableBytes` available with
    /// `balloonMiB` already in its balloon (those count as used with deflate-on-OOM): all it has
    /// available, or nothing more when that is no more than the reserve; never all its memory.
    static func balloonTarget(memoryMiB: Int, availableBytes: UInt64, balloonMiB: Int) -> Int {
        let availableMiB = Int(clamping: availableBytes >> 20)
        let reserve = reserveMiB(memoryMiB: memoryMiB)
        let wanted = availableMiB > reserve ? balloonMiB + availableMiB : balloonMiB
        return min(max(0, wanted), memoryMiB - reserve)
    }

    /// MiB to leave in the balloon once the guest settled, having given `given` of the `asked`:
    /// the reserve comes back to it as free pages.
    static func settledTarget(memoryMiB: Int, asked: Int, given: Int) -> Int {
        max(0, min(given, asked) - reserveMiB(memoryMiB: memoryMiB))
    }

    /// The process printed: the sandbox is busy again, so the balloon comes down.
    /// The balloon is only ever moved under the state's lock, so an inflation decided just
    /// before an activity cannot land after that activity's deflation.
    func activity() {
        let deflated = state.withLock { state -> Bool in
            state.lastActivity = .now
            state.generation &+= 1
            state.cachesDropped = false
            guard state.asked != nil else { return false }
            state.asked = nil
            state.settleAt = nil
            try? sandbox.setBalloon(mebibytes: 0)
            return true
        }
        if deflated { logger.debug("sandbox busy again: balloon deflated") }
    }

    /// Runs until cancelled: reclaims each time the sandbox has been quiet for `after`.
    func watch() async {
        while !Task.isCancelled {
            let now = ContinuousClock.now
            let (due, generation, asked, settleAt, cachesDropped) = state.withLock {
                ($0.lastActivity + after, $0.generation, $0.asked, $0.settleAt, $0.cachesDropped)
            }
            if method == .cache, !cachesDropped, now >= due {
                await dropCaches(generation: generation)
            } else if method == .balloon, asked == nil, now >= due {
                await reclaim(generation: generation)
            } else if let asked, let settleAt, now >= settleAt {
                settle(asked: asked, generation: generation)
            }
            let wait: Duration = asked == nil && !cachesDropped && due > now ? min(due - now, .seconds(1)) : .seconds(1)
            try? await Task.sleep(for: max(wait, .milliseconds(50)))
        }
    }

    private func dropCaches(generation: UInt64) async {
        do {
            let dropped = try await sandbox.dropGuestCaches()
            state.withLock { if $0.generation == generation { $0.cachesDropped = true } }
            logger.debug(
                "sandbox idle: guest caches dropped",
                metadata: [
                    "cached KiB before": "\(dropped.cachedBytesBefore >> 10)", "cached KiB after": "\(dropped.cachedBytesAfter >> 10)",
                ])
        } catch {
            // Asked again at the next quiet period; the guest may be busy or ending.
            logger.debug("idle sandbox's caches not dropped: \(error)")
            state.withLock { if $0.generation == generation { $0.lastActivity = .now } }
        }
    }

    private func reclaim(generation: UInt64) async {
        let stats: (available: UInt64, memoryMiB: Int)
        do {
            let memory = try await sandbox.guestStats().memory
            stats = (memory.limitBytes - min(memory.limitBytes, memory.usageBytes), sandbox.memoryMiB)
        } catch {
            // Asked again at the next quiet period; the guest may be busy or ending.
            logger.debug("idle sandbox's memory not read: \(error)")
            state.withLock { if $0.generation == generation { $0.lastActivity = .now } }
            return
        }
        let target = Self.balloonTarget(memoryMiB: stats.memoryMiB, availableBytes: stats.available, balloonMiB: sandbox.balloonMiB)
        let inflated = state.withLock { state -> Bool in
            guard state.generation == generation else { return false }
            state.asked = target
            state.settleAt = .now + Self.settleTime
            state.givenAtLastLook = sandbox.balloonMiB
            try? sandbox.setBalloon(mebibytes: target)
            return true
        }
        if inflated { logger.debug("sandbox idle: balloon inflated", metadata: ["MiB": "\(target)"]) }
    }

    private func settle(asked: Int, generation: UInt64) {
        let given = sandbox.balloonMiB
        let target = Self.settledTarget(memoryMiB: sandbox.memoryMiB, asked: asked, given: given)
        let lowered = state.withLock { state -> Bool in
            guard state.generation == generation else { return false }
            // Still filling (a slow or busy host): look again later.
            if given < asked, given > state.givenAtLastLook {
                state.givenAtLastLook = given
                state.settleAt = .now + Self.settleTime
                return false
            }
            state.settleAt = nil
            state.asked = target
            try? sandbox.setBalloon(mebibytes: target)
            return true
        }
        guard lowered else { return }
        logger.debug("balloon settled", metadata: ["asked MiB": "\(asked)", "given MiB": "\(given)", "kept MiB": "\(target)"])
    }
}
