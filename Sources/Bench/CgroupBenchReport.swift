import Cgroups
import Foundation

/// `rund bench cgroups` results: JSON as encoded, a table for people.
package struct CgroupBenchReport: Encodable {
    struct Run: Encodable {
        let threads: Int
        let path: String
        let rounds: Int
        /// Operations over all rounds; p50/p99 are over all of them.
        let operations: Int
        let p50Ms: Double
        let p99Ms: Double
        /// Median over the rounds of each round's wall time, process CPU and host CPU.
        let totalMs: Double
        let processCPUMs: Double
        let hostCPUMs: Double
        /// mkdir path: median time the kernel needed after the run to free the removed cgroups.
        let settleMs: Double
        /// Mean microseconds per operation spent in each phase (get, configure, attach, put).
        let phaseMeanUs: [String: Double]

        /// Combines the rounds of one path at one thread count.
        init(_ rounds: [CgroupChurn.Measurement], label: String) {
            threads = rounds.first?.threads ?? 0
            path = label
            self.rounds = rounds.count
            let latencies = rounds.flatMap(\.latencies).sorted()
            operations = latencies.count
            p50Ms = Double(CgroupChurn.percentile(latencies, 0.5)) / 1e6
            p99Ms = Double(CgroupChurn.percentile(latencies, 0.99)) / 1e6
            func median(_ values: [UInt64]) -> Double { Double(CgroupChurn.percentile(values.sorted(), 0.5)) / 1e6 }
            totalMs = median(rounds.map(\.wallNanoseconds))
            processCPUMs = median(rounds.map(\.processCPUNanoseconds))
            hostCPUMs = median(rounds.map(\.hostCPUNanoseconds))
            settleMs = median(rounds.map(\.settleNanoseconds))
            let perOperation = Double(max(1, latencies.count)) * 1e3
            phaseMeanUs = Dictionary(
                uniqueKeysWithValues: CgroupChurn.Phase.allCases.map { phase in
                    (phase.rawValue, Double(rounds.reduce(UInt64(0)) { $0 + ($1.phaseTotals[phase] ?? 0) }) / perOperation)
                })
        }
    }

    struct Ratio: Encodable {
        let threads: Int
        let wall: Double
        let processCPU: Double
        let p50: Double
        /// mkdir total / pool-keep total.
        let wallKeepingLimits: Double?
    }

    let mode: String
    let hierarchies: Int
    let count: Int
    let rounds: Int
    let limits: String
    let runs: [Run]
    let kvmCreateVM: KVMCreateProbe.Comparison?
    let poolStatistics: String

    /// mkdir-path total / pool total at 10 threads (or the first thread count measured).
    package var ratio: Double { (ratios.first { $0.threads == 10 } ?? ratios.first)?.wall ?? 0 }
    var ratioThreads: Int { (ratios.first { $0.threads == 10 } ?? ratios.first)?.threads ?? 0 }

    var ratios: [Ratio] {
        Dictionary(grouping: runs, by: \.threads).keys.sorted().compactMap { threads in
            guard let mkdir = runs.first(where: { $0.threads == threads && $0.path == "mkdir" }),
                let pool = runs.first(where: { $0.threads == threads && $0.path == "pool" })
            else { return nil }
            let keeping = runs.first { $0.threads == threads && $0.path == "pool-keep" }
            return Ratio(
                threads: threads, wall: mkdir.totalMs / max(pool.totalMs, 1e-9),
                processCPU: mkdir.processCPUMs / max(pool.processCPUMs, 1e-9), p50: mkdir.p50Ms / max(pool.p50Ms, 1e-9),
                wallKeepingLimits: keeping.map { mkdir.totalMs / max($0.totalMs, 1e-9) })
        }
    }

    enum CodingKeys: String, CodingKey {
        case ratio, ratioThreads, ratios, mode, hierarchies, count, rounds, limits, runs, kvmCreateVM, poolStatistics
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ratio, forKey: .ratio)
        try container.encode(ratioThreads, forKey: .ratioThreads)
        try container.encode(ratios, forKey: .ratios)
        try container.encode(mode, forKey: .mode)
        try container.encode(hierarchies, forKey: .hierarchies)
        try container.encode(count, forKey: .count)
        try container.encode(rounds, forKey: .rounds)
        try container.encode(limits, forKey: .limits)
        try container.encode(runs, forKey: .runs)
        try container.encodeIfPresent(kvmCreateVM, forKey: .kvmCreateVM)
        try container.encode(poolStatistics, forKey: .poolStatistics)
    }

    package func table() -> String {
        var lines = [
            "cgroup pool vs mkdir/rmdir: \(count) operations per row and round, \(rounds) rounds (times: median round), cgroup \(mode) (\(hierarchies) hierarchies), limits: \(limits)",
            row([
                "threads", "path", "p50 ms", "p99 ms", "total ms", "cpu ms", "host cpu ms", "get us", "config us", "attach us", "put us",
                "settle ms",
            ]),
        ]
        for run in runs {
            let phases = ["get", "configure", "attach", "put"].map { fixed(run.phaseMeanUs[$0] ?? 0, 1) }
            lines.append(
                row(
                    [
                        "\(run.threads)", run.path, fixed(run.p50Ms, 3), fixed(run.p99Ms, 3), fixed(run.totalMs, 1),
                        fixed(run.processCPUMs, 1), fixed(run.hostCPUMs, 1),
                    ] + phases + [run.path == "mkdir" ? fixed(run.settleMs, 1) : "-"]))
        }
        lines.append(
            "ratio mkdir/pool: "
                + ratios.map {
                    "\($0.threads) threads: total \(fixed($0.wall, 2))x, cpu \(fixed($0.processCPU, 2))x, p50 \(fixed($0.p50, 2))x"
                        + ($0.wallKeepingLimits.map { " (pool-keep total \(fixed($0, 2))x)" } ?? "")
                }.joined(separator: "; "))
        if let kvm = kvmCreateVM { lines.append(kvm.line) }
        lines.append("ratio (total at \(ratioThreads) threads): \(fixed(ratio, 2))x")
        return lines.joined(separator: "\n")
    }

    private func row(_ cells: [String]) -> String {
        let widths = [7, 9, 8, 8, 9, 8, 11, 8, 9, 9, 8, 9]
        return zip(cells, widths).map { cell, width in
            String(repeating: " ", count: max(0, width - cell.count)) + cell
        }.joined(separator: " ")
    }
}

/// `value` with `digits` decimals, for tables.
func fixed(_ value: Double, _ digits: Int) -> String {
    String(format: "%.\(digits)f", value)
}
