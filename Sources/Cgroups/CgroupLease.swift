#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Synchronization

/// One sandbox's hold on a pooled cgroup: attach processes, change limits, release.
/// Release exactly once (a second call does nothing); a lease dropped without release keeps
/// its entry until `rund gc` finds its owner dead.
public final class CgroupLease: Sendable {
    public let sandboxID: String
    /// The process whose death lets `rund gc` return the entry.
    public let owner: ProcessIdentity
    private let pool: CgroupPool
    private let slot: Mutex<CgroupSlot?>

    init(pool: CgroupPool, slot: CgroupSlot, sandboxID: String, owner: ProcessIdentity) {
        self.pool = pool
        self.slot = Mutex(slot)
        self.sandboxID = sandboxID
        self.owner = owner
    }

    /// The entry's directory in each hierarchy (empty after release).
    public var paths: [String] {
        slot.withLock { $0?.paths(in: pool.parents) ?? [] }
    }

    /// The entry's current directory name (`sb-<token>-<pid>-<start>-<id>`).
    public var name: String? { slot.withLock { $0?.name.text } }

    /// Moves process `pid` (all its threads) into the cgroup in every hierarchy.
    public func attach(pid: Int32) throws {
        try withSlot { try $0.attach(pid) }
    }

    /// Moves one thread (v1 hierarchies only, through `tasks`).
    public func attach(thread tid: Int32) throws {
        guard pool.host.hierarchies.allSatisfy({ $0.version == .v1 }) else {
            throw CgroupError("moving a single thread needs cgroup v1; attach a process instead")
        }
        try withSlot { try $0.attachThread(tid) }
    }

    /// Moves process `pid` back to the cgroups this process was in when the pool opened (a
    /// process that joined its own sandbox's cgroup steps out before `release`).
    public func detach(pid: Int32) throws {
        try withSlot { _ in try pool.parents.moveHome(pid) }
    }

    /// Changes the limits; only values that differ from the current ones are written.
    public func update(limits: CgroupLimits) throws {
        try withSlot { try pool.write(limits, to: $0) }
    }

    /// The processes now in the cgroup, over all hierarchies.
    public func processes() throws -> Set<Int32> {
        try withSlot { try $0.processes() }
    }

    /// Kills whatever still runs in the cgroup (the calling process steps out instead), resets
    /// the limits and returns the cgroup to the pool.
    public func release() throws {
        guard
            let taken = slot.withLock({ slot -> CgroupSlot? in
                defer { slot = nil }; return slot
            })
        else { return }
        try pool.giveBack(taken, sandboxID: sandboxID)
    }

    private func withSlot<T>(_ body: (CgroupSlot) throws -> T) throws -> T {
        try slot.withLock { slot in
            guard let slot else { throw CgroupError("the cgroup of sandbox \(sandboxID) was already released") }
            return try body(slot)
        }
    }
}
