import ArgumentParser
import Bench
import Foundation
import HostOS
import KVM
import Sandbox
import VMM

/// Options `rund bench density` and `rund bench concurrency` share.
struct FleetOptions: ParsableArguments {
    @Option(help: "Image reference in the store.") var image: String
    @Option(help: ArgumentHelp("How many sandboxes at once, e.g. 1,10,50.", valueName: "N,N,...")) var counts: String
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: "vCPUs.") var vcpus: Int = 1
    @Option(help: "Clone from this existing template instead of making one (made ones are removed at the end).")
    var template: String?
    @Flag(help: "Print one JSON object.") var json = false

    var parsedCounts: [Int] { counts.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        let parsed = parsedCounts
        guard !parsed.isEmpty, parsed.count == counts.split(separator: ",").count, parsed.allSatisfy({ (1...1000).contains($0) }) else {
            throw ValidationError("--counts takes numbers from 1 to 1000 separated by commas, got \(counts)")
        }
        try BenchRun.checkSandboxSize(memory: memory, vcpus: vcpus)
    }

    static func checkHost(script: String) throws {
        if KVMHostProbe.flavor() == .pvm {
            throw CLIError("this host's KVM is PVM and cannot boot the guest kernel; run it in the rig: scripts/\(script) [options]")
        }
    }

    static var rund: String { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0] }
}

struct BenchDensity: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "density",
        abstract: "Memory of N idle sandboxes, cold-booted and cloned from one template (PSS, private, guest vs VMM).",
        discussion: """
            For each N in --counts, starts N `rund run --image REF -- sh -c 'echo ready; sleep'` \
            processes cold (--no-template), waits until every one prints ready, reads each \
            process's /proc/PID/smaps and stops them; then the same N cloned from a template. \
            Guest memory is the mapping the size of the guest's RAM; VMM is everything else of \
            the rund process (its code, heap, stacks). PSS splits shared pages between their users: \
            a clone's unwritten guest pages are the template file's page cache, shared by all. \
            Needs a KVM that boots stock kernels; on a PVM host use scripts/bench-density.
            """)

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup var fleet: FleetOptions
    @Option(
        help: ArgumentHelp(
            "Kinds of sandboxes, a round of each per count: cold (the default image device), pmem, blk (cold with "
                + "the image on that device), clone.", valueName: "KIND,KIND,..."))
    var starts = "cold,clone"
    @Option(help: ArgumentHelp("Each sandbox reads every file under this directory of the image before it idles.", valueName: "DIR"))
    var read: String?
    @Flag(help: "Give the VMs no balloon: free page reporting off, to measure what it saves (cold starts only).")
    var withoutBalloon = false
    @Option(
        help: ArgumentHelp(
            "Run each sandbox with `rund run --reclaim-idle SECONDS` and measure once every one has gone idle and "
                + "given its memory back.", valueName: "SECONDS"))
    var reclaimIdle: Int?
    @Option(
        help: ArgumentHelp(
            "With --reclaim-idle: as `rund run --reclaim-idle-by` (default: cache).", valueName: "cache|balloon"))
    var reclaimIdleBy: IdleReclaimMethod?
    @Flag(help: "Run each sandbox with `rund run --small-guest-pages` (cold boots' RAM in 4 KiB host pages).")
    var smallGuestPages = false

    var parsedStarts: [FleetStart] { starts.split(separator: ",").compactMap { FleetStart(rawValue: String($0)) } }

    func validate() throws {
        guard !parsedStarts.isEmpty, parsedStarts.count == starts.split(separator: ",").count else {
            throw ValidationError("--starts takes cold, pmem, blk and clone separated by commas, got \(starts)")
        }
        if let read, !read.hasPrefix("/") { throw ValidationError("--read takes an absolute path inside the image, got \(read)") }
        if let reclaimIdle, !(1...3600).contains(reclaimIdle) {
            throw ValidationError("--reclaim-idle must be 1 to 3600 seconds, got \(reclaimIdle)")
        }
        if reclaimIdleBy != nil, reclaimIdle == nil { throw ValidationError("--reclaim-idle-by goes with --reclaim-idle SECONDS") }
        if reclaimIdle != nil, withoutBalloon {
            throw ValidationError("--reclaim-idle needs a balloon: leave out --without-balloon")
        }
        if withoutBalloon, parsedStarts.contains(.clone) {
            throw ValidationError("a template's clones have its balloon: leave out --without-balloon or the clone start")
        }
    }

    func run() async throws {
        try FleetOptions.checkHost(script: "bench-density")
        let report = try DensityBenchmark.measure(
            rund: FleetOptions.rund, root: StateRoot.resolve(rootOptions.root), image: fleet.image, counts: fleet.parsedCounts,
            memoryMiB: fleet.memory, vcpus: fleet.vcpus, template: fleet.template, starts: parsedStarts, read: read,
            balloon: !withoutBalloon, reclaimIdleSeconds: reclaimIdle,
            reclaimIdleBy: reclaimIdleBy ?? .cache, smallGuestPages: smallGuestPages)
        if fleet.json { try printJSON(report) } else { print(report.text) }
    }
}

struct BenchConcurrency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "concurrency",
        abstract: "Starts per second with N sandboxes started at once, cold and cloned (p50/p99 latency).",
        discussion: """
            For each N in --counts, spawns N `rund run --image REF -- true` at once, cold \
            (--no-template) and then cloned from a template, and times each from its spawn to its \
            exit; starts per second is N over the time until the last one ended, also given per \
            core of this machine. Needs a KVM that boots stock kernels; on a PVM host use \
            scripts/bench-concurrency.
            """)

    @OptionGroup var rootOptions: RootOptions
    @OptionGroup var fleet: FleetOptions

    func run() async throws {
        try FleetOptions.checkHost(script: "bench-concurrency")
        let report = try ConcurrencyBenchmark.measure(
            rund: FleetOptions.rund, root: StateRoot.resolve(rootOptions.root), image: fleet.image, counts: fleet.parsedCounts,
            memoryMiB: fleet.memory, vcpus: fleet.vcpus, template: fleet.template)
        if fleet.json { try printJSON(report) } else { print(report.text) }
    }
}
