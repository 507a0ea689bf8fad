import Network

/// The networks (namespace, veth, NAT rule, address) of `--network default` sandboxes whose
/// rund process died.
struct NetworkReclaimer: GarbageReclaimer {
    let name = "networks"

    func reclaim(_ context: GarbageContext) throws -> GarbageOutcome {
        let (abandoned, problems) = SandboxNetwork.collectGarbage(stateRoot: context.root, dryRun: context.dryRun)
        let verb = context.dryRun ? "would remove" : "removed"
        let failures = problems.isEmpty ? "" : "; could not remove: " + problems.joined(separator: "; ")
        return GarbageOutcome(
            summary: "\(verb) \(abandoned.count) abandoned sandbox network\(abandoned.count == 1 ? "" : "s")\(failures)",
            details: abandoned, failed: !problems.isEmpty)
    }
}
