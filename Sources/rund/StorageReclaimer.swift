import Storage

/// `rund gc` part for the image store: staging directories and half-removed images that crashed
/// imports, pulls and removals left behind. Writable layers need none: they are O_TMPFILE files
/// that vanish with their last descriptor.
struct StorageReclaimer: GarbageReclaimer {
    let name = "images"

    func reclaim(_ context: GarbageContext) throws -> GarbageOutcome {
        let removed = ImageStore(root: context.root).removeStaleStaging(dryRun: context.dryRun)
        let verb = context.dryRun ? "would remove" : "removed"
        return GarbageOutcome(
            summary: "\(verb) \(removed.count) stale staging director\(removed.count == 1 ? "y" : "ies")",
            details: removed, failed: false)
    }
}
