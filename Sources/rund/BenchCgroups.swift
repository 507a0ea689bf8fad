import ArgumentParser
import Cgroups
import FoundationEssentials
import HostOS

#if canImport(Glibc)
import Glibc
#endif

struct BenchCgroups: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cgroups",
        abstract: "Cgroup pool (rename) versus mkdir/rmdir per sandbox; KVM_CREATE_VM inside versus outside a cgroup.",
        discussion: """
        In each of `--rounds` rounds, for each thread count, `--count` operations run on that \
        many threads, first by the mkdir \
        path (mkdir in every hierarchy, write limits, move a sleeping child in and out, rmdir), \
        then by the pool path (take by rename, write limits, move in and out, release), then by \
        the pool path without resetting limits on release (pool-keep: only changed limits are \
        written). Reports \
        per-operation p50/p99, wall time, CPU time and the ratio mkdir/pool. `--json` prints one \
        object whose `ratio` is mkdir total / pool total at 10 threads (else the first count).
        Needs root and writable cgroupfs; works in its own parent (rund-bench-<pid>) and removes it.
        """
    )

    @Option(help: "Operations per thread count and path.")
    var count = 2000

    @Option(help: "Comma-separated thread counts.")
    var threads = "1,10,50"

    @Option(help: "Rounds; the paths take turns in each, and times are the median round.")
    var rounds = 3

    @Option(help: "KVM_CREATE_VM samples inside and outside a pooled cgroup (0 skips).")
    var kvmSamples = 50

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Option(help: .hidden)
    var kvmProbe: Int?

    var threadCounts: [Int] {
        threads.split(separator: ",").compactMap { Int($0.filter { $0 != " " }) }
    }

    /// Checked in run(), not validate(): a usage error would print the usage block too, and
    /// rund errors are one line.
    func check() throws {
        guard (1...1_000_000).contains(count) else { throw CgroupError("--count must be 1-1000000") }
        let counts = threadCounts
        guard !counts.isEmpty, counts.count == threads.split(separator: ",").count, counts.allSatisfy({ (1...256).contains($0) }) else {
            throw CgroupError("--threads must be a comma-separated list of numbers 1-256, e.g. 1,10,50")
        }
        guard (1...100).contains(rounds) else { throw CgroupError("--rounds must be 1-100") }
        guard (0...1000).contains(kvmSamples) else { throw CgroupError("--kvm-samples must be 0-1000") }
    }

    func run() async throws {
        if let kvmProbe { return try KVMCreateProbe.runAsChild(samples: kvmProbe) }
        try check()
        let host = try CgroupHost.detect()
        guard geteuid() == 0, host.writable else {
            throw CgroupError("rund bench cgroups needs root and writable cgroupfs (\(host.summary))")
        }
        let report = try measure(host: host)
        if json {
            try printJSON(report)
        } else {
            print(report.table())
        }
    }

    /// Limits every operation writes (the same on both paths).
    static let limits = CgroupLimits(memoryBytes: 128 << 20, cpuQuotaMicros: 50_000, cpuShares: 512, maxProcesses: 64)

    private func measure(host: CgroupHost) throws -> CgroupBenchReport {
        let parent = "rund-bench-\(getpid())"
        defer { try? CgroupPool.removeAll(host: host, parentName: parent) }
        let counts = threadCounts
        let widest = counts.max() ?? 1
        let pool = try CgroupPool(
            host: host, configuration: .init(parentName: parent, minimumFree: widest + 2, maximumFree: 2 * widest + 4))
        defer { try? pool.shutdown() }
        // The same pool without the reset on release: shows what the limit writes cost.
        let keepingParent = parent + "-keep"
        defer { try? CgroupPool.removeAll(host: host, parentName: keepingParent) }
        let keepingPool = try CgroupPool(
            host: host,
            configuration: .init(parentName: keepingParent, minimumFree: widest + 2, maximumFree: 2 * widest + 4, resetLimitsOnRelease: false))
        defer { try? keepingPool.shutdown() }
        let children = try (0..<widest).map { _ in try SpawnedProcess.spawn(["sleep", "3600"]) }
        defer { children.forEach { $0.kill(); _ = try? $0.wait() } }
        // Interrupted: the threads stop after their current operation and this function
        // returns through its defers, so no sleeping child and no cgroup is left behind.
        let stop = CgroupChurn.StopRequest()
        try SignalForwarder.forward([SIGINT, SIGTERM]) { _ in stop.request() }

        let variants: [(label: String, path: CgroupChurn.Path, pool: CgroupPool)] = [
            ("mkdir", .mkdir, pool), ("pool", .pool, pool), ("pool-keep", .pool, keepingPool),
        ]
        // Warm every variant (page in code, fill dentry caches) before anything is timed.
        for variant in variants {
            _ = try CgroupChurn.measure(variant.path, pool: variant.pool, processes: [children[0].pid], count: 20, limits: Self.limits, stop: stop)
        }
        var measured: [String: [CgroupChurn.Measurement]] = [:]
        for _ in 0..<rounds {
            for threadCount in counts {
                let processes = Array(children.prefix(threadCount).map(\.pid))
                for variant in variants {
                    let measurement = try CgroupChurn.measure(
                        variant.path, pool: variant.pool, processes: processes, count: count, limits: Self.limits, stop: stop)
                    if stop.isRequested { throw CgroupError("interrupted: nothing measured is reported") }
                    if let failure = measurement.failures.first {
                        throw CgroupError("\(variant.label) path with \(threadCount) threads failed: \(failure)")
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
