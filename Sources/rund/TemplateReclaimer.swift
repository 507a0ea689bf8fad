import Sandbox

/// Templates half made or half removed by a process that died (`rund template create` killed
/// mid-way). Complete templates are kept, usable or not: `rund template ls` says which.
struct TemplateReclaimer: GarbageReclaimer {
    let name = "templates"

    func reclaim(_ context: GarbageContext) throws -> GarbageOutcome {
        let removed = try TemplateStore(stateRoot: context.root).reclaimAbandoned(dryRun: context.dryRun)
        let verb = context.dryRun ? "would remove" : "removed"
        return GarbageOutcome(
            summary: "\(verb) \(removed.count) unfinished template\(removed.count == 1 ? "" : "s")", details: removed, failed: false)
    }
}
