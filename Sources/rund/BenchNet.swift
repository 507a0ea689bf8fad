import ArgumentParser
import Bench
import HostOS
import KVM
import Sandbox

/// `rund bench net`: TCP throughput both ways and round trips between this host and a guest,
/// rund's virtio-net beside QEMU microvm's, with and without offloads.
struct BenchNet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net",
        abstract: "TCP throughput and round trips host <-> guest: rund's virtio-net beside QEMU microvm's.",
        discussion: """
            Each run measures four guests in turn: rund (`rund run --network default --rootfs DIR -- \
            /netbench serve`) with and without checksum/TSO offloads, and QEMU microvm booting rund's \
            guest kernel with netbench as its init, its virtio-net-device on a tap in a network namespace \
            set up exactly as a sandbox's (veth, tc redirects), with and without offloads. From this host \
            `netbench client` sends for --seconds (host to guest), receives for --seconds (guest to host) \
            and times --rounds one-byte round trips (TCP_NODELAY). Reported: medians over the runs, p99 \
            over the runs in brackets, and the rund/QEMU ratios. netbench is scripts/lib/netbench.c, \
            built static (scripts/bench-net builds it). Needs root, iproute2, iptables and a KVM that \
            boots Linux; on a PVM host use scripts/bench-net.
            """)

    @OptionGroup var rootOptions: RootOptions
    @Option(help: "The static netbench binary (scripts/lib/netbench.c).") var netbench: String
    @Option(help: "Runs; each measures every subject once.") var runs: Int = 5
    @Option(help: "Seconds of each throughput direction.") var seconds: Double = 3
    @Option(help: "One-byte round trips timed per run.") var rounds: Int = 2000
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: "The QEMU binary used as the peer.") var qemu: String = "qemu-system-x86_64"
    @Option(help: "Seconds before a guest that does not start serving is abandoned.") var timeout: Double = 180
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1") }
        guard seconds > 0, seconds <= 600 else { throw ValidationError("--seconds must be between 0 and 600") }
        guard (1...1_000_000).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 1000000") }
        try BenchRun.checkSandboxSize(memory: memory, vcpus: 1)
    }

    func run() async throws {
        if KVMHostProbe.flavor() == .pvm {
            throw CLIError("this host's KVM is PVM and cannot boot the guest kernel; run it in the rig: scripts/bench-net [options]")
        }
        let root = StateRoot.resolve(rootOptions.root)
        let kernel = try GuestKernel.directory(stateRoot: root, choice: .rund) + "/vmlinuz"
        let report = try NetworkBenchmark.run(
            .init(
                rund: try BootProbe.selfExecutable(), netbench: netbench, stateRoot: root, kernel: kernel, qemu: qemu, runs: runs,
                seconds: seconds, rounds: rounds, memoryMiB: memory, timeout: timeout))
        if json { try printJSON(report) } else { print(report.text()) }
    }
}
