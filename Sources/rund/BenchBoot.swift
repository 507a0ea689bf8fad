import ArgumentParser
import Bench

/// `rund bench boot`: VMM start → guest init running, and VMM peak RSS, for rund and for QEMU's
/// microvm on the same kernel and initramfs, alternating runs in one invocation.
struct BenchBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot time to init and VMM memory: rund vs QEMU microvm, same kernel and initrd.",
        discussion: """
            Needs a KVM that boots stock kernels (run it inside scripts/rig on a PVM host;
            scripts/bench-boot does that). The initrd's init must print the line '\(BootProbe.marker)'
            on the console as soon as it runs, then power off. Time is measured from spawning the VMM
            process to that line appearing on its console, the same way for both VMMs.
            """)

    @Option(help: "Guest kernel (bzImage).") var kernel: String
    @Option(help: "Initramfs whose init prints the marker line and powers off.") var initrd: String
    @Option(help: "Runs per VMM.") var runs: Int = 5
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: "vCPUs.") var vcpus: Int = 1
    @Option(help: "The QEMU binary used as the peer.") var qemu: String = "qemu-system-x86_64"
    @Option(help: "Seconds before a run is abandoned.") var timeout: Double = 120
    @Flag(help: "Print one JSON object (top-level 'ratio' = rund median / QEMU median boot time).") var json = false

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        try SecondsOption.check(timeout, "--timeout", in: 0.1...86400)
    }

    func run() throws {
        let report = try BootBenchmark.measure(
            rund: try BootProbe.selfExecutable(), kernel: kernel, initrd: initrd, runs: runs,
            memoryMiB: memory, vcpus: vcpus, qemu: qemu, timeout: timeout)
        if json { try printJSON(report) } else { report.printTable() }
    }
}
