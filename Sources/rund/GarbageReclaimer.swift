import FoundationEssentials

/// What every `rund gc` part gets: the state root and whether to change anything.
struct GarbageContext {
    let root: String
    let dryRun: Bool
}

/// One kind of leftover that crashed sandboxes can leave (cgroups, files, sockets...).
/// `rund gc` runs every reclaimer in `GCCommand.reclaimers`; adding one is adding a type.
protocol GarbageReclaimer {
    /// Key in `rund gc --json` and prefix of its text line.
    var name: String { get }
    /// Reclaims what is provably abandoned and nothing in use. Throws only when the reclaimer
    /// could not run at all; per-item failures belong in the outcome.
    func reclaim(_ context: GarbageContext) throws -> GarbageOutcome
}

/// A reclaimer's result: one line for people, a JSON value for scripts.
struct GarbageOutcome {
    let summary: String
    let details: any Encodable
    let failed: Bool
}
