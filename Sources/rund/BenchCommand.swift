import ArgumentParser

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure rund against a peer in the same run (medians, p99, ratio).",
        subcommands: [
            BenchCgroups.self, BenchLayers.self, BenchBoot.self, BenchRun.self, BenchClone.self, BenchDensity.self, BenchConcurrency.self,
            BenchNet.self,
        ]
    )
}
