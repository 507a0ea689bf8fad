#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Cgroups
import Logging

/// The sandbox's pooled cgroup, and what joins it:
/// - cgroup v1: the machine's thread (`tasks`), so one VMM process can serve many sandboxes;
/// - cgroup v2 (a thread cannot join a memory-controlled cgroup alone): the whole process, when
///   it runs this one sandbox only (`rund run`); it steps back out before the release;
/// - otherwise (v2 with several sandboxes per process, no writable cgroupfs as inside a bare
///   rig guest) none: the sandbox runs unconfined, and the log says so.
final class SandboxCgroup: Sendable {
    enum Placement: Equatable {
        case thread
        case process
        case none
    }

    private let pool: CgroupPool?
    private let lease: CgroupLease?
    let placement: Placement

    init(sandboxID: String, memoryMiB: Int, writableSizeMiB: Int, soleSandboxInProcess: Bool, logger: Logger) throws {
        let host: CgroupHost
        do {
            host = try CgroupHost.detect()
            guard host.writable else { throw SandboxError("cgroupfs is read-only") }
        } catch {
            logger.warning("running without a cgroup: \(error)")
            (pool, lease, placement) = (nil, nil, .none)
            return
        }
        placement = Self.placement(host: host, soleSandboxInProcess: soleSandboxInProcess)
        guard placement != .none else {
            logger.warning("running without a cgroup: cgroup v2 confines whole processes, and this one serves several sandboxes")
            (pool, lease) = (nil, nil)
            return
        }
        let pool = try CgroupPool(host: host, configuration: .init(minimumFree: 0, maximumFree: 8, refillInBackground: false), logger: logger)
        do {
            lease = try pool.take(sandboxID: sandboxID, limits: Self.limits(memoryMiB: memoryMiB, writableSizeMiB: writableSizeMiB))
        } catch {
            try? pool.shutdown()
            throw error
        }
        self.pool = pool
    }

    /// v1 hierarchies take single threads; anything with v2 takes whole processes only.
    static func placement(host: CgroupHost, soleSandboxInProcess: Bool) -> Placement {
        if host.hierarchies.allSatisfy({ $0.version == .v1 }) { return .thread }
        return soleSandboxInProcess ? .process : .none
    }

    /// Guest RAM, plus what the guest's writes can pin in the host's page cache (at most its
    /// writable layer's size, where that lives in memory: a tmpfs state root, as in the rig,
    /// where nothing can write it back), plus the VMM's own pages (with the whole process
    /// inside on v2: rund's heap, threads and buffers too). Only a runaway VMM meets this
    /// limit: the guest itself cannot use more than its RAM, and its OOM killer acts first.
    static func limits(memoryMiB: Int, writableSizeMiB: Int) -> CgroupLimits {
        CgroupLimits(memoryBytes: Int64(memoryMiB + writableSizeMiB + overheadMiB) << 20)
    }

    static let overheadMiB = 64

    /// The cgroup's directories (empty without one).
    var paths: [String] { lease?.paths ?? [] }

    /// v2: moves this process in. Call before the guest's memory is touched: pages are charged
    /// to the cgroup the process is in when they are first used.
    func attachProcess() throws {
        guard placement == .process, let lease else { return }
        try lease.attach(pid: getpid())
    }

    /// v1: moves the calling thread (the machine's) in; the vCPU threads it starts inherit it.
    func attachCurrentThread(logger: Logger) {
        guard placement == .thread, let lease else { return }
        do {
            try lease.attach(thread: Int32(rund_gettid()))
        } catch {
            logger.warning("cannot move the VM thread into its cgroup: \(error)")
        }
    }

    /// Steps the process out (v2), then returns the cgroup to the pool.
    func release(logger: Logger) {
        if placement == .process, let lease {
            do {
                try lease.detach(pid: getpid())
            } catch {
                logger.warning("cannot move rund out of the sandbox's cgroup: \(error)")
            }
        }
        do {
            try lease?.release()
        } catch {
            logger.warning("cannot return the sandbox's cgroup to the pool (rund gc will): \(error)")
        }
        try? pool?.shutdown()
    }
}
