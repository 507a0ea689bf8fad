import ArgumentParser
import Boot
import Foundation
import HostOS
import Logging
import VMM

struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm",
        abstract: "Run a bare microVM (no container): for kernels, initramfs and device bring-up.",
        subcommands: [VMBoot.self, VMModules.self])
}

struct VMBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot a Linux kernel (bzImage or uncompressed vmlinux) in a microVM and wait until it powers off.",
        discussion: """
            The guest sees an 8250 console on COM1, an i8042 reset line, each --disk as a
            virtio-blk device (vda, vdb, ...) and each --pmem as a virtio-pmem device (pmem0,
            pmem1, ...; the guest needs the virtio_pmem and nd_pmem modules), all described in
            ACPI. SIGTERM or SIGINT stops the guest.

            Exit status: 0 guest powered off, 2 guest rebooted, 3 guest kernel panicked,
            4 guest crashed (triple fault, KVM error), 5 guest made no progress (--stall-timeout),
            6 a VMM thread broke its seccomp confinement, 128+N stopped by signal N, 1 bad input.
            """)

    @Option(help: "Linux kernel image: a bzImage, or an uncompressed x86-64 ELF vmlinux.") var kernel: String
    @Option(help: "Initial ramdisk (cpio archive, optionally compressed).") var initrd: String?
    @Option(help: "Extra kernel command line, appended to rund's defaults.") var cmdline: String = ""
    @Option(
        name: .customLong("disk"),
        help: ArgumentHelp("A virtio-blk disk backed by FILE; add ',ro' for read-only. Repeatable.", valueName: "FILE[,ro]"))
    var disks: [String] = []
    @Option(
        name: .customLong("pmem"),
        help: ArgumentHelp(
            "A read-only virtio-pmem device mapping FILE (whole 4 KiB pages, e.g. an EROFS image), shared through the host's page cache. Repeatable.",
            valueName: "FILE"))
    var pmemImages: [String] = []
    @Option(help: "Number of vCPUs.") var vcpus: Int = 1
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: ArgumentHelp("Guest console: a file path, or '-' for standard output.", valueName: "FILE|-"))
    var console: String = "-"
    @Option(
        help: ArgumentHelp(
            "End the VM (status 5) when the guest makes no progress for this long: no VM exit while a vCPU runs.",
            valueName: "SECONDS"))
    var stallTimeout: Double?
    @Flag(help: "Print one JSON object describing how the VM ended.") var json = false
    @Flag(help: "Log VMM internals to standard error.") var verbose = false

    func validate() throws {
        try SecondsOption.check(stallTimeout, "--stall-timeout", in: 2...86400)
    }

    func run() throws {
        var configuration = VMConfiguration(
            kernelPath: kernel, initrdPath: initrd, extraCommandLine: cmdline, memoryMiB: memory, vcpuCount: vcpus,
            disks: try disks.map(Self.parseDisk), console: console == "-" ? .standardOutput : .file(console))
        configuration.stallTimeout = stallTimeout.map { .milliseconds(Int64($0 * 1000)) }
        configuration.pmemImages = pmemImages
        var logger = Logger(label: "rund.vmm")
        logger.logLevel = verbose ? .debug : .warning

        let machine: Machine
        do {
            machine = try Machine(configuration: configuration, logger: logger)
        } catch {
            throw CLIError(CLIAdvice.line(for: error).dropFirst("rund: ".count).description)
        }
        try SignalForwarder.forward([SIGTERM, SIGINT]) { machine.stop(signal: $0) }
        let exit = try machine.run()
        if json {
            try printJSON(VMBootResult(exit: exit, machine: machine))
        } else if exit != .poweredOff {
            FileHandle.standardError.write(Data("rund: \(exit)\n".utf8))
        }
        if exit.exitStatus != 0 { throw ExitCode(exit.exitStatus) }
    }

    static func parseDisk(_ text: String) throws -> VMConfiguration.Disk {
        var parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let path = parts.removeFirst()
        guard !path.isEmpty, parts.allSatisfy({ $0 == "ro" || $0 == "rw" }) else {
            throw CLIError("--disk takes FILE or FILE,ro; got '\(text)'")
        }
        return VMConfiguration.Disk(path: path, readOnly: parts.last == "ro")
    }
}

struct VMBootResult: Encodable {
    let exit: String
    let exitStatus: Int32
    let bootMarkerMilliseconds: Double?

    init(exit: MachineExit, machine: Machine) {
        self.exit = exit.description
        exitStatus = exit.exitStatus
        bootMarkerMilliseconds = machine.bootMarkerNanoseconds.map { Double($0) / 1e6 }
    }
}

struct VMModules: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "modules",
        abstract: "Print the cached guest kernel's module files for NAME... in load order.",
        discussion: """
            Each file (relative to the kernel's modules directory) comes after the modules it depends \
            on (modules.dep), once; modules built into the kernel print nothing. This is how rund \
            builds its guest initramfs; the rig and the test scripts use it too.
            """)

    @OptionGroup var rootOptions: RootOptions
    @Option(help: ArgumentHelp("A kernel cache directory (default: the state root's kernel/current).", valueName: "DIR"))
    var kernelDirectory: String?
    @Argument(help: "Module names (dashes or underscores).") var names: [String]

    func run() throws {
        let directory = (kernelDirectory ?? StateRoot.resolve(rootOptions.root) + "/kernel/current") + "/modules/"
        func text(_ path: String) throws -> String {
            String(decoding: try FileDescriptor.open(path, O_RDONLY).readToEnd(limit: 64 << 20), as: UTF8.self)
        }
        let dependencies: String
        do {
            dependencies = try text(directory + "modules.dep")
        } catch {
            throw CLIError("\(error); run scripts/setup to cache the guest kernel")
        }
        let builtin = try? text(directory + "modules.builtin")
        do {
            for path in try KernelModules(dependencies: dependencies, builtin: builtin).loadOrder(of: names) { print(path) }
        } catch {
            throw CLIError("\(error) (in \(directory)modules.dep)")
        }
    }
}

/// A one-line user-facing error: ArgumentParser prints "Error: <message>" and exits 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
