#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Cgroups
import Logging

/// The sandbox's pooled cgroup, which the whole VMM process joins (its vCPU threads and guest
/// memory with it) while it runs this one sandbox. A process, not a thread: memory is charged to
/// the cgroup of the process that owns the pages (cgroup v1 charges the mm owner's memcg; v2
/// refuses a lone thread in a memory-controlled cgroup), so only a whole process makes the guest's
/// memory count against the sandbox's limit on both.
///
/// Fails closed: when the sandbox cannot be confined (no writable cgroupfs, or a process that
/// serves several sandboxes at once) it does not start, unless the caller allows it to run
/// unconfined, which the log then says.
final class SandboxCgroup: Sendable {
    private let pool: CgroupPool?
    private let lease: CgroupLease?

    init(
        sandboxID: String, memoryMiB: Int, vcpuCount: Int, writableSizeMiB: Int, soleSandboxInProcess: Bool,
        allowUnconfined: Bool, logger: Logger
    ) throws {
        let host: CgroupHost
        do {
            guard soleSandboxInProcess else {
                throw SandboxError(.cannotConfine, "this process serves other sandboxes, and a cgroup confines whole processes")
            }
            host = try CgroupHost.detect()
            guard host.writable else { throw SandboxError(.cannotConfine, "cgroupfs is read-only here") }
        } catch {
            guard allowUnconfined else {
                if let error = error as? SandboxError { throw error }
                throw SandboxError(.cannotConfine, "cannot use cgroups here: \(error)")
            }
            logger.warning("running without a cgroup, as asked: \(error)")
            (pool, lease) = (nil, nil)
            return
        }
        let pool = try CgroupPool(
            host: host, configuration: .init(minimumFree: 0, maximumFree: 8, refillInBackground: false), logger: logger)
        do {
            lease = try pool.take(
                sandboxID: sandboxID,
                limits: Self.limits(memoryMiB: memoryMiB, vcpuCount: vcpuCount, writableSizeMiB: writableSizeMiB))
        } catch {
            try? pool.shutdown()
            throw error
        }
        self.pool = pool
    }

    /// - Memory: guest RAM, plus what the guest's writes can pin in the host's page cache (at most
    ///   its writable layer's size, where that lives in memory: a tmpfs state root, as in the rig,
    ///   where nothing can write it back), plus the VMM's own pages (rund's heap, threads and
    ///   buffers). Only a runaway VMM meets this limit: the guest itself cannot use more than its
    ///   RAM, and its OOM killer acts first.
    /// - CPU: one CPU per vCPU, and a quarter CPU for the VMM's own threads.
    /// - Tasks: rund's threads (the guest's processes are not host tasks); a cap on what a VMM
    ///   that went wrong could start.
    static func limits(memoryMiB: Int, vcpuCount: Int, writableSizeMiB: Int) -> CgroupLimits {
        // Saturating: sizes come from the caller (a CLI option, a container's config.json).
        let period = CgroupLimits.defaultCPUPeriodMicros
        let mebibytes = [memoryMiB, writableSizeMiB, overheadMiB].reduce(Int64(0)) { sum, part in
            let (total, overflow) = sum.addingReportingOverflow(Int64(clamping: max(part, 0)))
            return overflow ? .max : total
        }
        let (memoryBytes, memoryOverflow) = mebibytes.multipliedReportingOverflow(by: 1 << 20)
        let (vcpuQuota, vcpuOverflow) = Int64(clamping: max(vcpuCount, 1)).multipliedReportingOverflow(by: period)
        let (quota, quotaOverflow) = vcpuQuota.addingReportingOverflow(period / 4)
        return CgroupLimits(
            memoryBytes: memoryOverflow ? .max : memoryBytes,
            cpuQuotaMicros: vcpuOverflow || quotaOverflow ? .max : quota,
            cpuPeriodMicros: period, maxProcesses: maxTasks)
    }

    static let overheadMiB = 64
    static let maxTasks: Int64 = 256

    /// The cgroup's directories (empty without one).
    var paths: [String] { lease?.paths ?? [] }

    /// Moves this process in. Call before the guest's memory is touched: pages are charged to the
    /// cgroup the process is in when they are first used.
    func attachProcess() throws {
        try lease?.attach(pid: getpid())
    }

    /// Changes the limits of the sandbox's cgroup (nothing to change without one).
    func update(_ limits: CgroupLimits) throws {
        try limits.validate()
        try lease?.update(limits: limits)
    }

    /// Steps the process out, then returns the cgroup to the pool.
    func release(logger: Logger) {
        if let lease {
            do {
                try lease.detach(pid: getpid())
            } catch {
                logger.warning("cannot move rund out of the sandbox's cgroup: \(error)")
            }
        }
        do {
            try lease?.release()
        } catch {
            logger.warning("cannot return the sandbox's cgroup to the pool (garbage collection will): \(error)")
        }
        try? pool?.shutdown()
    }
}
