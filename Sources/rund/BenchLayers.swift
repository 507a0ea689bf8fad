import ArgumentParser
import Bench
import HostOS
import Storage

/// `rund bench layers`: how fast a sandbox gets its writable disk (reflink vs full copy vs fresh
/// mkfs.ext4, one at a time and in a burst), and how long one EROFS build of ~100 MB takes.
struct BenchLayers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layers",
        abstract: "Writable-layer creation (reflink vs full copy vs mkfs.ext4) and EROFS build time.",
        discussion: """
            Layers are made in <root>/writable (the XFS pool when the root cannot reflink) and closed
            right away, so nothing is left behind. `ratio` is full-copy p50 / reflink p50 at
            concurrency 1.
            """
    )

    @OptionGroup var rootOptions: RootOptions
    @Option(help: "Writable layer size in MiB.")
    var sizeMib = WritableLayers.defaultSizeMiB
    @Option(help: "Sequential creations per method.")
    var iterations = 20
    @Option(help: "Creations started at once per method in the burst (0 skips the burst).")
    var concurrency = 200
    @Option(help: "Size of the tree for the EROFS build, in MB.")
    var imageMb = 100
    @Option(help: "EROFS builds to time.")
    var erofsRuns = 3
    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard iterations >= 1, concurrency >= 0, imageMb >= 1, erofsRuns >= 1 else {
            throw ValidationError("--iterations, --image-mb and --erofs-runs must be at least 1, --concurrency at least 0")
        }
    }

    func run() async throws {
        let report = try LayerBenchmark.measure(
            root: StateRoot.resolve(rootOptions.root), sizeMiB: sizeMib, iterations: iterations,
            concurrency: concurrency, imageMB: imageMb, erofsRuns: erofsRuns)
        if json {
            try printJSON(report)
        } else {
            print(LayerBenchmark.table(report))
        }
    }
}
