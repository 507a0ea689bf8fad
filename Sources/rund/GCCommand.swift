import ArgumentParser
import FoundationEssentials
import HostOS

struct GCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Reclaim what crashed sandboxes left behind.",
        discussion: """
            Each part reclaims only what is provably abandoned and never touches anything in use:
              cgroups  pooled cgroups whose owner process is gone are emptied (leftover processes
                       are killed), reset and returned to the pool; half-made entries are finished.
            Safe to run at any time, also while sandboxes run. Exits non-zero if a part failed.
            """
    )

    @OptionGroup var rootOptions: RootOptions

    @Flag(help: "Print one JSON object keyed by part (cgroups, ...).")
    var json = false

    @Flag(help: "Report what would be reclaimed, change nothing.")
    var dryRun = false

    @Option(help: "Name of the cgroup pool's parent directory in each hierarchy.")
    var cgroupParent = "rund"

    /// Every part of `rund gc`, in the order they run.
    var reclaimers: [any GarbageReclaimer] {
        [
            CgroupReclaimer(parentName: cgroupParent), StorageReclaimer(), LayerChainReclaimer(), TemplateReclaimer(), NetworkReclaimer(),
        ]
    }

    func run() async throws {
        let context = GarbageContext(root: StateRoot.resolve(rootOptions.root), dryRun: dryRun)
        var lines: [String] = []
        var objects: [String: AnyEncodable] = [:]
        var failed = false
        for reclaimer in reclaimers {
            do {
                let outcome = try reclaimer.reclaim(context)
                lines.append("\(reclaimer.name): \(outcome.summary)")
                objects[reclaimer.name] = AnyEncodable(outcome.details)
                failed = failed || outcome.failed
            } catch {
                lines.append("\(reclaimer.name): failed: \(error)")
                objects[reclaimer.name] = AnyEncodable(["error": "\(error)"])
                failed = true
            }
        }
        if json {
            try printJSON(objects)
        } else {
            lines.forEach { print($0) }
        }
        if failed { throw ExitCode.failure }
    }
}

/// Type-erased Encodable, so each gc part can report its own structure.
struct AnyEncodable: Encodable {
    let value: any Encodable
    init(_ value: any Encodable) { self.value = value }
    func encode(to encoder: any Encoder) throws { try value.encode(to: encoder) }
}
