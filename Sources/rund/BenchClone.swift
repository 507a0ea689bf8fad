import ArgumentParser
import Bench
import Foundation
import HostOS
import KVM
import VMM

/// `rund bench clone`: cold boot against a clone of a template, phase by phase, alternating.
struct BenchClone: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clone",
        abstract: "Sandbox runs cold-booted and cloned from a template, alternating, phase by phase (median, p99).",
        discussion: """
            Makes a template of the given size (or uses --template), then runs `CMD` (default \
            /bin/true) --runs times each way, a cold boot then a clone, through the real Sandbox. \
            The phases are `rund bench run`'s; a clone has no kernel-boot (its kernel booted in the \
            template) and its agent-ready ends when the agent answers the host's connect. \
            to-agent-ready is vm-create + kernel-boot + agent-ready. A template this command made \
            is removed at the end. Needs a KVM that boots stock kernels; on a PVM host run it in \
            the rig (scripts/bench-clone).
            """)

    @OptionGroup var rootOptions: RootOptions
    @Option(help: "Image reference in the store.") var image: String
    @Option(help: "Runs of each kind.") var runs: Int = 10
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: "vCPUs.") var vcpus: Int = 1
    @Option(help: "Use this existing template instead of making one.") var template: String?
    @Option(help: "The static guest agent (default: rund-agent next to the rund binary).") var agent: String?
    @Flag(help: "Print one JSON object.") var json = false
    @Argument(parsing: .captureForPassthrough, help: "The command to run (default /bin/true), after --.")
    var command: [String] = []

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1, got \(runs)") }
        try BenchRun.checkSandboxSize(memory: memory, vcpus: vcpus)
    }

    func run() async throws {
        if KVMHostProbe.flavor() == .pvm {
            throw CLIError("this host's KVM is PVM and cannot boot the guest kernel; run it in the rig: scripts/bench-clone [options]")
        }
        let given = command.first == "--" ? Array(command.dropFirst()) : command
        let report = try await CloneBenchmark.measure(
            root: StateRoot.resolve(rootOptions.root), agentPath: agent ?? RunCommand.agentNextToRund(), image: image,
            command: given.isEmpty ? BenchRun.defaultCommand : given, runs: runs, memoryMiB: memory, vcpus: vcpus,
            template: template)
        if json { try printJSON(report) } else { print(report.text) }
    }
}
