#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Logging
import Synchronization

/// Pre-created cgroups that sandboxes take by renaming (RunD's lightweight cgroup pool):
/// mkdir/rmdir of cgroups is slow and serialised by kernel locks, rename is cheap.
///
/// All state lives in directory names under `<mount>/<parent>/` in every hierarchy (see
/// `CgroupEntryName`), so a crashed process leaves nothing `rund gc` cannot work out. Several
/// processes may share one parent: an entry is claimed by renaming it in the first hierarchy,
/// which only one of them can do.
public final class CgroupPool: Sendable {
    public struct Configuration: Sendable {
        /// Directory under each hierarchy's root that holds the pool.
        public var parentName: String
        /// The background thread keeps at least this many free entries (made at start-up too).
        public var minimumFree: Int
        /// Released entries beyond this many free ones are removed instead of kept.
        public var maximumFree: Int
        public var refillInBackground: Bool
        /// Reset limits to the defaults on release. Off, a free entry keeps its last limits (they
        /// bind nothing while it is empty) and the next take writes only the values that differ:
        /// fewer writes when sandboxes share a size.
        public var resetLimitsOnRelease: Bool

        public init(
            parentName: String = "rund", minimumFree: Int = 8, maximumFree: Int = 64, refillInBackground: Bool = true,
            resetLimitsOnRelease: Bool = true
        ) {
            self.resetLimitsOnRelease = resetLimitsOnRelease
            self.parentName = parentName
            self.minimumFree = max(0, minimumFree)
            self.maximumFree = max(self.minimumFree, maximumFree)
            self.refillInBackground = refillInBackground
        }
    }

    /// Counters since start-up.
    public struct Statistics: Sendable, Equatable {
        public var taken = 0
        /// Takes that found the pool empty and had to mkdir.
        public var createdOnDemand = 0
        public var createdInBackground = 0
        public var released = 0
        public var removed = 0
    }

    public let configuration: Configuration
    public let host: CgroupHost
    package let parents: CgroupParents
    let logger: Logger
    private let state: Mutex<State>
    private let refill: Mutex<RefillThread?>
    package let defaults: [(CgroupLimitLayout.Setting, String)]
    private let me = ProcessIdentity.current()

    private struct State {
        var free: [CgroupSlot] = []
        var holders: Set<String> = []
        var statistics = Statistics()
        var closed = false
    }

    /// Opens the pool (making its parents), returns what crashed holders left (`rund gc`),
    /// adopts free entries already there, and fills up to `minimumFree`.
    public init(host: CgroupHost, configuration: Configuration = Configuration(), logger: Logger = Logger(label: "rund.cgroups")) throws {
        guard host.writable else {
            throw CgroupError("cgroupfs is not writable here: run as root on a host with cgroups mounted read-write")
        }
        guard let parents = try CgroupParents.open(host: host, name: configuration.parentName, create: true) else {
            throw CgroupError("cannot create the pool parent \(configuration.parentName)")
        }
        self.host = host
        self.configuration = configuration
        self.parents = parents
        self.logger = logger
        self.defaults = try parents.layout.values(for: CgroupLimits())
        self.state = Mutex(State())
        self.refill = Mutex(nil)

        let report = try CgroupGarbageCollector.collect(parents, logger: logger)
        if !report.returned.isEmpty {
            logger.info("returned cgroups of dead sandboxes", metadata: ["sandboxes": "\(report.returned)"])
        }
        let adopted = try adoptFreeEntries()
        state.withLock { $0.free = adopted }
        try fill(upTo: configuration.minimumFree, background: false)
        if configuration.refillInBackground {
            let thread = try RefillThread.start { [weak self] in self?.refillOnce() }
            refill.withLock { $0 = thread }
        }
    }

    deinit {
        refill.withLock { $0?.stop() }
    }

    /// Takes a free cgroup for `sandboxID`, renames it to carry the ID and the owner, and writes
    /// `limits`. `owner` is the process whose death frees the entry (`rund gc`); by default
    /// this process. Makes a fresh cgroup only when no free one is left.
    public func take(sandboxID: String, limits: CgroupLimits = CgroupLimits(), owner: ProcessIdentity? = nil) throws -> CgroupLease {
        let id = try SandboxID.validate(sandboxID)
        try limits.validate()
        let values = try parents.layout.values(for: limits)
        let slot = try takeSlot(sandboxID: id, owner: owner ?? me)
        do {
            try slot.apply(values)
        } catch let error as SystemError where error.errno == EINVAL || error.errno == ERANGE {
            // A value the kernel refuses (cpus outside the host's): the entry is fine.
            slot.forgetLimits()
            try? giveBack(slot, sandboxID: id)
            throw CgroupError("the kernel refused a limit for sandbox \(id) (\(error)): check the values")
        } catch {
            // The entry may be what refuses (v1: memory charged by an earlier holder that cannot
            // be reclaimed below the new limit): remove it rather than hand it out again.
            discard(slot, sandboxID: id)
            throw CgroupError("cannot set limits for sandbox \(id): \(error)")
        }
        return CgroupLease(pool: self, slot: slot, sandboxID: id, owner: owner ?? me)
    }

    /// Free entries right now.
    public var freeCount: Int { state.withLock { $0.free.count } }

    public var statistics: Statistics { state.withLock { $0.statistics } }

    /// Returns entries whose owner died (see `CgroupGarbageCollector`) and puts every free
    /// entry this pool does not list yet on its free list.
    public func collectGarbage() throws -> CgroupGarbageReport {
        let report = try CgroupGarbageCollector.collect(parents, logger: logger)
        let adopted = try adoptFreeEntries()
        state.withLock { state in
            let known = Set(state.free.map(\.token))
            for slot in adopted {
                if known.contains(slot.token) { slot.closeDescriptors() } else { state.free.append(slot) }
            }
        }
        return report
    }

    /// Stops the refill thread; with `removingFreeEntries`, removes the free entries too (and
    /// the parents, when nothing else is left in them).
    public func shutdown(removingFreeEntries: Bool = false) throws {
        refill.withLock { thread in
            thread?.stop()
            thread = nil
        }
        let free = state.withLock { state in
            state.closed = true
            defer { state.free.removeAll() }
            return state.free
        }
        guard removingFreeEntries else {
            free.forEach { $0.closeDescriptors() }
            return
        }
        for slot in free { try slot.destroy(in: parents) }
        for directory in parents.host.hierarchies {
            _ = rmdir("\(directory.mountPoint)/\(parents.name)")
        }
    }

    // MARK: - Internals shared with CgroupLease

    /// Makes sure nothing runs in the entry, resets its limits and returns it to the free
    /// list (or removes it above `maximumFree`). If processes survive, the entry keeps its
    /// taken name for `rund gc` and the error is thrown.
    package func giveBack(_ slot: CgroupSlot, sandboxID: String) throws {
        defer { state.withLock { _ = $0.holders.remove(sandboxID) } }
        guard slot.stillNamed(in: parents) else {
            logger.info("cgroup was already returned by gc (its owner died)", metadata: ["sandbox": "\(sandboxID)"])
            slot.closeDescriptors()
            return
        }
        do {
            try slot.drain(in: parents)
        } catch {
            slot.closeDescriptors()
            throw error
        }
        do {
            if configuration.resetLimitsOnRelease { try slot.apply(defaults) }
        } catch {
            slot.forgetLimits()
            logger.warning("could not reset cgroup limits", metadata: ["cgroup": "\(slot.name.text)", "error": "\(error)"])
        }
        let keep = state.withLock { !$0.closed && $0.free.count < configuration.maximumFree }
        if keep {
            try slot.rename(to: .free(token: slot.token), in: parents)
            state.withLock { state in
                state.free.append(slot)
                state.statistics.released += 1
            }
        } else {
            try slot.destroy(in: parents)
            state.withLock { $0.statistics.removed += 1 }
        }
    }

    /// Reserves the sandbox ID and claims an entry for it (renamed, limits not yet written).
    package func takeSlot(sandboxID id: String, owner: ProcessIdentity) throws -> CgroupSlot {
        try state.withLock { state in
            guard !state.closed else { throw CgroupError("the cgroup pool is shut down") }
            guard state.holders.insert(id).inserted else {
                throw CgroupError("sandbox \(id) already holds a cgroup: release it first or use another id")
            }
        }
        do {
            return try claim(owner: owner, sandboxID: id)
        } catch {
            state.withLock { _ = $0.holders.remove(id) }
            throw error
        }
    }

    /// Empties and removes an entry instead of returning it.
    private func discard(_ slot: CgroupSlot, sandboxID: String) {
        defer { state.withLock { _ = $0.holders.remove(sandboxID) } }
        do {
            try slot.drain(in: parents)
            try slot.destroy(in: parents)
            state.withLock { $0.statistics.removed += 1 }
        } catch {
            slot.closeDescriptors()
            logger.warning(
                "could not remove a cgroup entry; garbage collection will return it",
                metadata: ["cgroup": "\(slot.name.text)", "error": "\(error)"])
        }
    }

    func write(_ limits: CgroupLimits, to slot: CgroupSlot) throws {
        try limits.validate()
        try slot.apply(try parents.layout.values(for: limits))
    }

    // MARK: - Private

    /// Pops free entries until one can be renamed to carry the owner and id (another process
    /// may have claimed a listed entry first); makes a fresh one when none is left.
    private func claim(owner: ProcessIdentity, sandboxID id: String) throws -> CgroupSlot {
        while true {
            let (popped, low) = state.withLock { state in
                let slot = state.free.popLast()
                if slot != nil { state.statistics.taken += 1 }
                return (slot, state.free.count < configuration.minimumFree)
            }
            if low { refill.withLock { $0?.poke() } }
            guard let slot = popped else { break }
            do {
                try slot.rename(to: .taken(token: slot.token, owner: owner, sandboxID: id), in: parents)
                guard slot.holdsLeftoverMemory(in: parents) else { return slot }
                // It would count against this sandbox's limit: remove it (it is ours and empty).
                logger.debug("removing a pool entry that holds an earlier sandbox's memory", metadata: ["cgroup": "\(slot.name.text)"])
                try? slot.destroy(in: parents)
                state.withLock { state in
                    state.statistics.taken -= 1
                    state.statistics.removed += 1
                }
                continue
            } catch {
                // Claimed by another process, or damaged: drop it; `rund gc` repairs damage.
                logger.debug("skipping pool entry", metadata: ["cgroup": "\(slot.name.text)", "error": "\(error)"])
                slot.closeDescriptors()
                state.withLock { $0.statistics.taken -= 1 }
            }
        }
        // A fresh entry looks free to other processes until it is marked; one may take it first.
        var made: CgroupSlot?
        for _ in 0..<20 where made == nil {
            do {
                made = try CgroupSlot.create(
                    .taken(token: CgroupEntryName.newToken(), owner: owner, sandboxID: id), in: parents, defaults: defaults)
            } catch CgroupSlotRace.claimedByAnother {
                continue
            }
        }
        guard let slot = made else { throw CgroupError("cannot claim a cgroup entry: other processes took each one made (20 tries)") }
        state.withLock { state in
            state.statistics.taken += 1
            state.statistics.createdOnDemand += 1
        }
        return slot
    }

    private func adoptFreeEntries() throws -> [CgroupSlot] {
        try parents.directories[0].directoryEntries().compactMap { text in
            guard let name = try parents.entryName(directory: text, in: 0), case .free = name else { return nil }
            return try? CgroupSlot.open(name, in: parents)
        }
    }

    private func fill(upTo target: Int, background: Bool) throws {
        while state.withLock({ !$0.closed && $0.free.count < target }) {
            let slot = try CgroupSlot.create(.free(token: CgroupEntryName.newToken()), in: parents, defaults: defaults)
            state.withLock { state in
                state.free.append(slot)
                if background { state.statistics.createdInBackground += 1 }
            }
        }
    }

    private func refillOnce() {
        do {
            try fill(upTo: configuration.minimumFree, background: true)
        } catch {
            logger.warning("cgroup pool refill failed", metadata: ["error": "\(error)"])
        }
    }
}
