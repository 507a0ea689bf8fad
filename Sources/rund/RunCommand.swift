import ArgumentParser
import Foundation
import HostOS
import KVM
import Logging
import Network
import Sandbox
import VMM

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command in a new sandbox: a container of an image inside its own microVM.",
        discussion: """
            The root filesystem is an image in the store (--image; `rund image import` or `rund image \
            pull`) or a host directory (--rootfs, packed into a throwaway EROFS for this run). Without \
            CMD an image's Entrypoint and Cmd run; with it, CMD replaces Cmd (--rootfs needs CMD). \
            stdout and stderr are streamed; stdin is /dev/null unless -i. With -t the process gets a \
            terminal (the host terminal's size, else 24x80; output comes on stdout only), the host \
            terminal is raw while it runs, and window size changes follow.

            Stopping: the first SIGTERM, SIGINT (Ctrl-C without -t) or SIGHUP is forwarded to the \
            process. If the sandbox has not ended --stop-timeout seconds later, rund stops its VM \
            itself (the guest may ignore the signal, or not answer at all); a second signal stops \
            it at once. Either way everything the sandbox held is released, rund says so in one \
            line and exits with 128+N for signal N.

            Exit status: the process's, 128+N when signal N ended it (or rund stopped the sandbox on \
            signal N); 137 when the sandbox ran out of memory and the OOM killer ended the process \
            (rund says so on stderr); 125 when rund itself failed or the guest died (a kernel panic, \
            or no progress for --stall-timeout seconds), with one `rund: ...` line.

            Needs a /dev/kvm that boots stock kernels; on a PVM host use scripts/rig-run.
            """)

    @OptionGroup var rootOptions: RootOptions
    @Option(help: "Image reference in the store.") var image: String?
    @Option(help: ArgumentHelp("Host directory to use as the container's root filesystem instead of an image.", valueName: "DIR"))
    var rootfs: String?
    @Flag(name: .shortAndLong, help: "Connect rund's stdin to the process (else it reads /dev/null).") var interactive = false
    @Flag(name: [.customShort("t"), .long], help: "Give the process a terminal.") var tty = false
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: "Number of vCPUs.") var vcpus: Int = 1
    @Option(name: .customLong("env"), help: ArgumentHelp("Environment entry for the process. Repeatable.", valueName: "K=V"))
    var environment: [String] = []
    @Option(help: "Working directory inside the container (default: the image's, else /).") var workdir: String?
    @Option(help: ArgumentHelp("Numeric user (default: the image's, else root).", valueName: "UID[:GID]")) var user: String?
    @Option(help: "The static guest agent (default: rund-agent next to the rund binary).") var agent: String?
    @Option(help: ArgumentHelp("Write the guest's serial console to FILE (for debugging boots).", valueName: "FILE"))
    var console: String?
    @Option(help: ArgumentHelp("Seconds to wait, after forwarding a stop signal, before stopping the VM.", valueName: "SECONDS"))
    var stopTimeout: Double = 10
    @Option(
        help: ArgumentHelp(
            "Seconds the guest agent may take to answer at all (a cold boot's kernel boot included) before the run fails; "
                + "creating the container and starting its process get a quarter of it each.",
            valueName: "SECONDS"))
    var agentTimeout: Double = 120
    @Option(
        help: ArgumentHelp(
            "End the sandbox (status 125) when its guest makes no progress for this long: no VM exit while a vCPU runs. "
                + "Reports what each vCPU was doing. For diagnosing stuck guests; a guest that computes silently "
                + "for that long counts as stuck.", valueName: "SECONDS"))
    var stallTimeout: Double?
    @Flag(
        help: ArgumentHelp(
            "Run even when the sandbox cannot be given its own cgroup (then nothing limits the memory, CPU "
                + "and tasks of rund's process). Without it such a sandbox does not start."))
    var unconfined = false
    @Option(help: "Start as a clone of this template (`rund template ls`); fail if it does not fit.")
    var template: String?
    @Flag(help: "Boot the kernel even when a template fits (by default a fitting template is used).")
    var noTemplate = false
    @Option(
        help: ArgumentHelp(
            "How the guest reads the image: pmem (virtio-pmem, EROFS mounted dax: every sandbox of the image shares "
                + "the host's page cache) or blk (virtio-blk). Default: pmem when the guest kernel supports it and "
                + "no template is used, else blk.", valueName: "pmem|blk"))
    var rootfsDevice: RootfsDevice?
    @Option(
        help: ArgumentHelp(
            "The guest kernel: rund (ours, every driver built in: scripts/build-guest-kernel) or stock (Debian's "
                + "cloud kernel). Default: rund when it is built, else stock.", valueName: "rund|stock"))
    var kernel: GuestKernel?
    @Option(
        help: ArgumentHelp(
            "When the process has printed nothing for SECONDS, give the guest's idle memory back to the host "
                + "(see --reclaim-idle-by). A template's clone has its template's balloon.", valueName: "SECONDS"))
    var reclaimIdle: Double?
    @Option(
        help: ArgumentHelp(
            "With --reclaim-idle: cache (the default) drops the guest's page cache once per quiet spell and "
                + "free page reporting returns it; balloon inflates the VM's balloon to all the guest has available, "
                + "less a reserve, and its next output takes the balloon down again (it also takes free memory in runs "
                + "too small to report, but a clone pays for it: docs/devices.md).", valueName: "cache|balloon"))
    var reclaimIdleBy: IdleReclaimMethod?
    @Flag(
        help: ArgumentHelp(
            "Keep a cold-booted guest's RAM in 4 KiB host pages even where the host uses transparent huge pages: "
                + "an idle guest holds less (its free memory is not kept in 2 MiB pages), its boot is slower "
                + "(docs/bench.md). No effect on a template's clone."))
    var smallGuestPages = false
    @Option(
        help: ArgumentHelp(
            "The sandbox's network: none (loopback only), default (a network namespace of its own with a veth to "
                + "the host, an address from 10.213.0.0/16 and NAT to the outside) or netns:PATH (the interface of an "
                + "existing network namespace, such as one CNI made). Anything but none implies a cold boot.",
            valueName: "none|default|netns:PATH"))
    var network: NetworkMode = .none
    @Flag(help: "Offer the guest no checksum or TCP segmentation offloads on its network interface (for measuring).")
    var noNetworkOffloads = false
    @Option(help: .hidden) var testHook: [VMConfiguration.TestHook] = []
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        try SecondsOption.check(stopTimeout, "--stop-timeout", in: 0...86400)
        try SecondsOption.check(stallTimeout, "--stall-timeout", in: 2...86400)
        try SecondsOption.check(agentTimeout, "--agent-timeout", in: 1...86400)
        if template != nil && noTemplate { throw ValidationError("give either --template or --no-template, not both") }
        try SecondsOption.check(reclaimIdle, "--reclaim-idle", in: 1...86400)
        if reclaimIdleBy != nil, reclaimIdle == nil { throw ValidationError("--reclaim-idle-by goes with --reclaim-idle SECONDS") }
        if template != nil && rootfsDevice == .pmem {
            throw ValidationError("a template's clone reads its image through virtio-blk: drop --template or --rootfs-device pmem")
        }
    }

    func run() async throws {
        // Passthrough capture takes a leading --help as the command.
        if let first = command.first, ["-h", "--help"].contains(first) { throw CleanExit.helpRequest(self) }
        let exit: SandboxExit
        do {
            exit = try await runSandbox()
        } catch {
            // After runSandbox: the terminal is out of raw mode again, so the line prints cleanly.
            FileHandle.standardError.write(Data(CLIAdvice.line(for: error).utf8 + [0x0a]))
            throw ExitCode(125)
        }
        if let message = exit.stopMessage ?? exit.outOfMemoryMessage(memoryMiB: memory).map({ $0 + "; give it more with --memory" }) {
            FileHandle.standardError.write(Data("rund: \(message)\n".utf8))
        }
        if exit.status != 0 { throw ExitCode(exit.status) }
    }

    /// `--image REF` or `--rootfs DIR`: exactly one of them.
    static func root(image: String?, rootfs: String?) throws -> SandboxRoot {
        switch (image, rootfs) {
        case (let image?, nil): return .image(image)
        case (nil, let directory?): return .directory(directory)
        case (.some, .some): throw CLIError("give either --image or --rootfs, not both")
        case (nil, nil): throw CLIError("give the container's root: --image REF (from `rund image ls`) or --rootfs DIR")
        }
    }

    private func runSandbox() async throws -> SandboxExit {
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        let root = try Self.root(image: image, rootfs: rootfs)
        if KVMHostProbe.flavor() == .pvm {
            throw CLIError("this host's KVM is PVM and cannot boot the guest kernel; run it in the rig: scripts/rig-run [options] -- CMD")
        }
        let hostTerminal = tty && Terminal.isTerminal(0)
        var spec = SandboxSpec(
            id: "run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", root: root,
            command: argv, environment: environment, workingDirectory: workdir, user: try user.map(SandboxSpec.parseUser),
            memoryMiB: memory, vcpuCount: vcpus, consolePath: console, interactive: interactive,
            terminal: tty ? (hostTerminal ? Terminal.windowSize(of: 0) : nil) ?? .fallback : nil,
            stallTimeout: stallTimeout.map { .milliseconds(Int64($0 * 1000)) }, testHooks: Set(testHook))
        spec.agentTimeout = .milliseconds(Int64(agentTimeout * 1000))
        spec.template = noTemplate ? .coldBoot : template.map { .named($0) } ?? .automatic
        spec.rootfsDevice = rootfsDevice
        spec.reclaimIdleAfter = reclaimIdle.map { .milliseconds(Int64($0 * 1000)) }
        if let reclaimIdleBy { spec.reclaimIdleBy = reclaimIdleBy }
        spec.smallGuestPages = smallGuestPages
        spec.network = network
        spec.networkOffloads = !noNetworkOffloads
        // This process is about to hold a tenant's memory: no core dumps, no ptrace.
        try ProcessHardening.makeUndumpable()
        let sandbox = Sandbox(
            stateRoot: StateRoot.resolve(rootOptions.root), agentPath: agent ?? Self.agentNextToRund(),
            soleSandboxInProcess: true, allowUnconfined: unconfined, kernel: kernel)
        // A stop signal goes to the process, and stops the VM if the sandbox outlives the grace
        // period (or on a second one). The window size follows the host terminal's.
        let control = SandboxControl()
        let grace = Duration.milliseconds(Int64(stopTimeout * 1000))
        try SignalForwarder.forward([SIGINT, SIGTERM, SIGHUP] + (hostTerminal ? [SIGWINCH] : [])) { signal in
            if signal == SIGWINCH {
                if let size = Terminal.windowSize(of: 0) { control.resize(to: size) }
            } else {
                control.terminate(signal, grace: grace)
            }
        }
        // Keys go to the guest's terminal as they are typed (Ctrl-C included), and its output
        // comes back as it is; the host terminal is restored on every way out of here.
        let rawMode = hostTerminal ? try Terminal.enterRawMode(0) : nil
        defer { rawMode?.restore() }
        let output = try RunOutput(control: control)
        return try await sandbox.run(spec: spec, control: control, output: output.write)
    }

    static func agentNextToRund() -> String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("rund-agent").path
    }
}

extension VMConfiguration.TestHook: ExpressibleByArgument {}

extension RootfsDevice: ExpressibleByArgument {}
extension GuestKernel: ExpressibleByArgument {}
extension IdleReclaimMethod: ExpressibleByArgument {}
extension NetworkMode: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
}
