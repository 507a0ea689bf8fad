#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Cgroups
import Synchronization

/// The RunD paper's cgroup experiment: many threads each give a sandbox a cgroup, configure
/// it, move a process in and out, and give it up, either by mkdir/rmdir or through the pool.
/// Both paths use the same parents, the same write code and the same held descriptors, so
/// the difference is mkdir+rmdir versus rename+reset.
package enum CgroupChurn {
    public enum Path: String, Sendable, Codable, CaseIterable {
        /// mkdir in every hierarchy, write limits, attach, detach, rmdir.
        case mkdir
        /// take (rename), write limits, attach, detach, release (check empty, reset, rename).
        case pool
    }

    /// Where the time of one operation goes.
    public enum Phase: String, Sendable, Codable, CaseIterable {
        case get, configure, attach, put
    }

    public struct Measurement: Sendable {
        public let path: Path
        public let threads: Int
        /// Nanoseconds per whole operation, sorted.
        public let latencies: [UInt64]
        /// Nanoseconds per phase, summed over all operations.
        public let phaseTotals: [Phase: UInt64]
        public let wallNanoseconds: UInt64
        /// user+system time of this process (getrusage); kernel work deferred to kworkers (cgroup
        /// destruction) is not in it, see `hostCPUNanoseconds`.
        public let processCPUNanoseconds: UInt64
        /// Busy time of all CPUs (/proc/stat) over the run: includes kworkers, and other load.
        public let hostCPUNanoseconds: UInt64
        /// mkdir path: how long after the last rmdir the kernel took to free the removed cgroups
        /// (the count in /proc/cgroups back to where it started); the next run starts after it,
        /// so deferred destruction does not slow the path measured next.
        public let settleNanoseconds: UInt64
        public let failures: [String]

        public func percentile(_ fraction: Double) -> UInt64 {
            CgroupChurn.percentile(latencies, fraction)
        }
    }

    /// The nearest-rank percentile of sorted values (0 when empty).
    public static func percentile(_ sorted: [UInt64], _ fraction: Double) -> UInt64 {
        guard !sorted.isEmpty else { return 0 }
        let index = min(sorted.count - 1, Int((Double(sorted.count) * fraction).rounded(.up)) - 1)
        return sorted[max(0, index)]
    }

    /// Set from another thread (a signal handler's) to make running measurements stop after
    /// their current operation.
    public final class StopRequest: Sendable {
        private let flag = Atomic<Bool>(false)
        public init() {}
        public func request() { flag.store(true, ordering: .releasing) }
        public var isRequested: Bool { flag.load(ordering: .acquiring) }
    }

    /// Runs `count` operations spread over `processes.count` threads; thread i moves
    /// `processes[i]` in and out of the cgroup.
    public static func measure(
        _ path: Path, pool: CgroupPool, processes: [Int32], count: Int, limits: CgroupLimits, stop: StopRequest? = nil
    ) throws -> Measurement {
        try limits.validate()
        let values = try pool.parents.layout.values(for: limits)
        let threads = processes.count
        let results = Mutex<(latencies: [UInt64], phases: [Phase: UInt64], failures: [String])>(([], [:], []))
        let owner = ProcessIdentity.current()
        let cgroupsBefore = cgroupCount()
        let cpuBefore = processCPUNanoseconds()
        let hostBefore = hostBusyNanoseconds()
        let start = MonotonicNanoseconds.now()
        try ThreadGroup.run(count: threads) { thread in
            let operations = count / threads + (thread < count % threads ? 1 : 0)
            var latencies: [UInt64] = []
            latencies.reserveCapacity(operations)
            var phases = [UInt64](repeating: 0, count: Phase.allCases.count)
            var failures: [String] = []
            for round in 0..<operations where stop?.isRequested != true {
                do {
                    let id = "bench-\(thread)-\(round)"
                    var marks: [UInt64] = [MonotonicNanoseconds.now()]
                    let slot: CgroupSlot
                    switch path {
                    case .mkdir:
                        slot = try CgroupSlot.create(
                            .taken(token: CgroupEntryName.newToken(), owner: owner, sandboxID: id),
                            in: pool.parents, defaults: pool.defaults)
                    case .pool:
                        slot = try pool.takeSlot(sandboxID: id, owner: owner)
                    }
                    marks.append(MonotonicNanoseconds.now())
                    try slot.apply(values)
                    marks.append(MonotonicNanoseconds.now())
                    try slot.attach(processes[thread])
                    try pool.parents.moveHome(processes[thread])
                    marks.append(MonotonicNanoseconds.now())
                    switch path {
                    case .mkdir: try slot.destroy(in: pool.parents)
                    case .pool: try pool.giveBack(slot, sandboxID: id)
                    }
                    marks.append(MonotonicNanoseconds.now())
                    for phase in 0..<phases.count { phases[phase] += marks[phase + 1] - marks[phase] }
                    latencies.append(marks[4] - marks[0])
                } catch {
                    failures.append("\(error)")
                }
            }
            results.withLock { results in
                results.latencies += latencies
                for (index, phase) in Phase.allCases.enumerated() { results.phases[phase, default: 0] += phases[index] }
                results.failures += failures.prefix(3)
            }
        }
        let end = MonotonicNanoseconds.now()
        let wall = end - start
        let cpu = processCPUNanoseconds() - cpuBefore
        let hostCPU = hostBusyNanoseconds() &- hostBefore
        if path == .mkdir {
            while cgroupCount() > cgroupsBefore && MonotonicNanoseconds.now() - end < 3_000_000_000 { usleep(1_000) }
        }
        let settle = path == .mkdir ? MonotonicNanoseconds.now() - end : 0
        let collected = results.withLock { $0 }
        return Measurement(
            path: path, threads: threads, latencies: collected.latencies.sorted(), phaseTotals: collected.phases,
            wallNanoseconds: wall, processCPUNanoseconds: cpu, hostCPUNanoseconds: hostCPU,
            settleNanoseconds: settle, failures: collected.failures)
    }

    static func processCPUNanoseconds() -> UInt64 {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func nanoseconds(_ time: timeval) -> UInt64 { UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_usec) * 1_000 }
        return nanoseconds(usage.ru_utime) + nanoseconds(usage.ru_stime)
    }

    /// Cgroups that exist (not yet freed), summed over the controllers in /proc/cgroups.
    static func cgroupCount() -> Int {
        guard let text = try? FileDescriptor.open("/proc/cgroups", O_RDONLY).readValue() else { return 0 }
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.reduce(0) { sum, line in
            let fields = line.split(whereSeparator: \.isWhitespace)
            return sum + (fields.count >= 3 ? Int(fields[2]) ?? 0 : 0)
        }
    }

    /// user+nice+system+irq+softirq+steal of the `cpu` line of /proc/stat.
    static func hostBusyNanoseconds() -> UInt64 {
        guard let text = try? FileDescriptor.open("/proc/stat", O_RDONLY).readValue(capacity: 16384),
            let line = text.split(separator: "\n").first
        else { return 0 }
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard fields.count >= 8 else { return 0 }
        let busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]
        let ticksPerSecond = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        return busy * (1_000_000_000 / ticksPerSecond)
    }
}
