import Storage

/// The EROFS images the containerd shim made of snapshot layer chains: those whose layers
/// containerd removed, and staging that a killed build left.
struct LayerChainReclaimer: GarbageReclaimer {
    let name = "layer-chains"

    func reclaim(_ context: GarbageContext) throws -> GarbageOutcome {
        let removed = LayerChainImages(root: context.root).collectGarbage(dryRun: context.dryRun)
        let verb = context.dryRun ? "would remove" : "removed"
        return GarbageOutcome(
            summary: "\(verb) \(removed.count) stale layer-chain image\(removed.count == 1 ? "" : "s") or staging",
            details: removed, failed: false)
    }
}
