import ArgumentParser
import Bench
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
        let report = try CgroupBenchmark.measure(
            host: host, count: count, threadCounts: threadCounts, rounds: rounds,
            kvmSamples: kvmSamples)
        if json {
            try printJSON(report)
        } else {
            print(report.table())
        }
    }
}
