import Cgroups

/// Returns pooled cgroups whose owner process is gone (see `CgroupGarbageCollector`).
struct CgroupReclaimer: GarbageReclaimer {
    let parentName: String
    var name: String { "cgroups" }

    func reclaim(_ context: GarbageContext) throws -> GarbageOutcome {
        let host = try CgroupHost.detect()
        guard host.writable else {
            throw CgroupError("cgroupfs is not writable: run rund gc as root")
        }
        let report = try CgroupGarbageCollector.collect(host: host, parentName: parentName, dryRun: context.dryRun)
        var summary = "\(context.dryRun ? "would return" : "returned") \(report.returned.count)"
        if !report.returned.isEmpty { summary += " (\(report.returned.joined(separator: ", ")))" }
        summary += ", in use \(report.inUse.count)"
        if !report.completed.isEmpty { summary += ", completed \(report.completed.count) half-made" }
        if report.killedProcesses > 0 { summary += ", killed \(report.killedProcesses) leftover processes" }
        if !context.dryRun { summary += ", free \(report.free)" }
        if !report.failures.isEmpty { summary += "; failed: \(report.failures.joined(separator: "; "))" }
        return GarbageOutcome(summary: summary, details: report, failed: !report.failures.isEmpty)
    }
}
