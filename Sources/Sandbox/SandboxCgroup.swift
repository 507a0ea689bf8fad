#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Cgroups
import Logging

/// The sandbox's pooled cgroup, or none where this host has no writable cgroupfs (as inside a
/// bare rig guest): the sandbox then runs unconfined, and says so in the log.
final class SandboxCgroup: Sendable {
    private let pool: CgroupPool?
    private let lease: CgroupLease?

    init(sandboxID: String, memoryMiB: Int, logger: Logger) throws {
        let host: CgroupHost
        do {
            host = try CgroupHost.detect()
            guard host.writable else { throw SandboxError("cgroupfs is read-only") }
        } catch {
            logger.warning("running without a cgroup: \(error)")
            pool = nil
            lease = nil
            return
        }
        let pool = try CgroupPool(host: host, configuration: .init(minimumFree: 0, maximumFree: 8, refillInBackground: false), logger: logger)
        // Guest RAM plus the VMM's own pages for this sandbox.
        let limits = CgroupLimits(memoryBytes: Int64(memoryMiB + 64) << 20)
        do {
            lease = try pool.take(sandboxID: sandboxID, limits: limits)
        } catch {
            try? pool.shutdown()
            throw error
        }
        self.pool = pool
    }

    /// Moves the calling thread (the machine's) into the cgroup.
    func attachCurrentThread(logger: Logger) {
        guard let lease else { return }
        do {
            try lease.attach(thread: Int32(rund_gettid()))
        } catch {
            logger.warning("cannot move the VM thread into its cgroup: \(error)")
        }
    }

    func release() {
        try? lease?.release()
        try? pool?.shutdown()
    }
}
