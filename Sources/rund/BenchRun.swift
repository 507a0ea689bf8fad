import ArgumentParser
import Bench
import Boot
import Foundation
import HostOS
import KVM
import Sandbox
import Storage
import VMM

/// `rund bench run`: one command end to end through the real Sandbox, N times, split into
/// phases; beside it QEMU's microvm booting the same kernel and guest initramfs to the same
/// agent, alternating with the sandbox runs.
struct BenchRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "A sandbox run end to end, split into phases (median, p99), beside QEMU microvm's boot.",
        discussion: """
            Each run is `rund run --image REF -- CMD` (default /bin/true), timed at the phase boundaries \
            Sandbox reports: prepare, cgroup, writable-layer, vm-create, kernel-boot, agent-ready, \
            process-start, exit, teardown. kernel-boot ends at the agent's boot-marker write: one \
            MMIO write to 0x\(String(VMMAddresses.bootMarker.rawValue, radix: 16)) that the VMM timestamps, made \
            as soon as the agent (PID 1) has loaded its modules and listens on vsock. agent-ready \
            ends when the host's vsock connect is answered (retried every 100 ms while refused).

            The peer, after each sandbox run: QEMU (-M microvm,accel=kvm -cpu host) with the same \
            kernel, command line, guest initramfs, memory, vCPUs, disks and a vhost-vsock device \
            (when /dev/vhost-vsock exists), timed from spawning QEMU to the same marker write, which \
            QEMU logs as a rejected access (-d guest_errors), then killed. That span holds QEMU's \
            process start and VM build too, so compare it with rund's vm-create + kernel-boot; the \
            kernel-boot ratio is given as well.

            --kernel rund,stock measures rund's own guest kernel and Debian's stock one, alternating, \
            each with its QEMU peer, and adds their bzImage and initramfs sizes, the guest's memory in \
            use once booted (MemTotal - MemAvailable, as the agent reports it, from one more untimed \
            run) and the ratios of the two kernels' medians.

            Peak RSS is this process's VmHWM, reset before each run through /proc/self/clear_refs. \
            The guest initramfs and the writable-layer template are built before the first run. \
            Needs a KVM that boots stock kernels; on a PVM host use scripts/bench-run.
            """)

    @OptionGroup var rootOptions: RootOptions
    @Option(help: "Image reference in the store.") var image: String
    @Option(help: "Sandbox runs, each followed by one QEMU boot.") var runs: Int = 5
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: "vCPUs.") var vcpus: Int = 1
    @Option(help: "The static guest agent (default: rund-agent next to the rund binary).") var agent: String?
    @Option(help: "The QEMU binary used as the peer.") var qemu: String = "qemu-system-x86_64"
    @Option(help: "Seconds before a QEMU boot is abandoned.") var timeout: Double = 120
    @Option(
        help: ArgumentHelp(
            "Guest kernels to measure, separated by commas: rund (ours) and stock (Debian's). With both, each run "
                + "boots each in turn. Default: the one `rund run` would boot.", valueName: "rund,stock"))
    var kernel: String?
    @Flag(help: "Print one JSON object.") var json = false
    @Argument(parsing: .captureForPassthrough, help: "The command to run (default /bin/true), after --.")
    var command: [String] = []

    static let defaultCommand = ["/bin/true"]

    var argv: [String] {
        let given = command.first == "--" ? Array(command.dropFirst()) : command
        return given.isEmpty ? Self.defaultCommand : given
    }

    /// `--memory` and `--vcpus` of a benchmark's sandboxes, checked as the VM will check them.
    static func checkSandboxSize(memory: Int, vcpus: Int) throws {
        guard memory >= VMConfiguration.minMemoryMiB else {
            throw ValidationError("--memory must be at least \(VMConfiguration.minMemoryMiB) MiB, got \(memory)")
        }
        guard (1...VMConfiguration.maxVCPUs).contains(vcpus) else {
            throw ValidationError("--vcpus must be between 1 and \(VMConfiguration.maxVCPUs), got \(vcpus)")
        }
    }

    /// `--kernel` as a list (nil: not given).
    var kernels: [GuestKernel]? {
        get throws {
            guard let kernel else { return nil }
            let names = kernel.split(separator: ",", omittingEmptySubsequences: false)
            let kernels = names.compactMap { GuestKernel(rawValue: String($0)) }
            guard !kernels.isEmpty, kernels.count == names.count, Set(kernels).count == kernels.count else {
                throw ValidationError("--kernel takes rund and stock separated by commas, each once, got '\(kernel)'")
            }
            return kernels
        }
    }

    func validate() throws {
        _ = try kernels
        guard runs >= 1 else { throw ValidationError("--runs must be at least 1, got \(runs)") }
        try BenchRun.checkSandboxSize(memory: memory, vcpus: vcpus)
        try SecondsOption.check(timeout, "--timeout", in: 0.1...86400)
    }

    func run() async throws {
        if KVMHostProbe.flavor() == .pvm {
            throw CLIError("this host's KVM is PVM and cannot boot the guest kernel; run it in the rig: scripts/bench-run [options]")
        }
        let root = StateRoot.resolve(rootOptions.root)
        let report = try await RunBenchmark.measure(
            root: root, agentPath: agent ?? RunCommand.agentNextToRund(), image: image,
            command: argv, runs: runs, memoryMiB: memory, vcpus: vcpus, qemu: qemu, timeout: timeout,
            kernels: try kernels ?? [GuestKernel.preferred(stateRoot: root)])
        if json { try printJSON(report) } else { print(report.text) }
    }
}
