#if canImport(Glibc)
import Glibc
#endif
import Cgroups
import HostOS

/// `rund bench cgroups`: the cgroup pool (take by rename) against mkdir/rmdir per sandbox, on as
/// many threads as asked, in rounds where the paths take turns; and KVM_CREATE_VM inside a pooled
/// cgroup against outside one. Works in its own parent (rund-bench-<pid>) and removes it.
package enum CgroupBenchmark {
    /// Limits every operation writes (the same on both paths).
    static let limits = CgroupLimits(memoryBytes: 128 << 20, cpuQuotaMicros: 50_000, cpuShares: 512, maxProcesses: 64)

    package static func measure(
        host: CgroupHost, count: Int, threadCounts counts: [Int], rounds: Int,
        kvmSamples: Int
    ) throws -> CgroupBenchReport {
        let parent = "rund-bench-\(getpid())"
        defer { try? CgroupPool.removeAll(host: host, parentName: parent) }
        let widest = counts.max() ?? 1
        let pool = try CgroupPool(
            host: host, configuration: .init(parentName: parent, minimumFree: widest + 2, maximumFree: 2 * widest + 4))
        defer { try? pool.shutdown() }
        // The same pool without the reset on release: shows what the limit writes cost.
        let keepingParent = parent + "-keep"
        defer { try? CgroupPool.removeAll(host: host, parentName: keepingParent) }
        let keepingPool = try CgroupPool(
            host: host,
            configuration: .init(
                parentName: keepingParent, minimumFree: widest + 2, maximumFree: 2 * widest + 4, resetLimitsOnRelease: false))
        defer { try? keepingPool.shutdown() }
        let children = try (0..<widest).map { _ in try SpawnedProcess.spawn(["sleep", "3600"]) }
        defer {
            children.forEach {
                $0.kill(); _ = try? $0.wait()
            }
        }
        // Interrupted: the threads stop after their current operation and this function
        // returns through its defers, so no sleeping child and no cgroup is left behind.
        let stop = CgroupChurn.StopRequest()
        try SignalForwarder.forward([SIGINT, SIGTERM]) { _ in stop.request() }

        let variants: [(label: String, path: CgroupChurn.Path, pool: CgroupPool)] = [
            ("mkdir", .mkdir, pool), ("pool", .pool, pool), ("pool-keep", .pool, keepingPool),
        ]
        // Warm every variant (page in code, fill dentry caches) before anything is timed.
        for variant in variants {
            _ = try CgroupChurn.measure(
                variant.path, pool: variant.pool, processes: [children[0].pid], count: 20, limits: Self.limits, stop: stop)
        }
        var measured: [String: [CgroupChurn.Measurement]] = [:]
        for _ in 0..<rounds {
            for threadCount in counts {
                let processes = Array(children.prefix(threadCount).map(\.pid))
                for variant in variants {
                    let measurement = try CgroupChurn.measure(
                        variant.path, pool: variant.pool, processes: processes, count: count, limits: Self.limits, stop: stop)
                    if stop.isRequested { throw BenchError("interrupted: nothing measured is reported") }
                    if let failure = measurement.failures.first {
                        throw BenchError("\(variant.label) path with \(threadCount) threads failed: \(failure)")
                    }
                    measured["\(threadCount) \(variant.label)", default: []].append(measurement)
                }
            }
        }
        let runs = counts.flatMap { threadCount in
            variants.map { CgroupBenchReport.Run(measured["\(threadCount) \($0.label)"] ?? [], label: $0.label) }
        }
        let kvm = kvmSamples == 0 ? nil : KVMCreateProbe.compare(pool: pool, samples: kvmSamples, limits: Self.limits)
        return CgroupBenchReport(
            mode: host.mode.rawValue, hierarchies: host.hierarchies.count, count: count, rounds: rounds,
            limits: "memory 128 MiB (+swap 0), cpu 50000/100000 us, shares 512, pids 64",
            runs: runs, kvmCreateVM: kvm, poolStatistics: "\(pool.statistics)")
    }
}
