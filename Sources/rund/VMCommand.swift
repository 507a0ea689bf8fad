import ArgumentParser
import Foundation
import HostOS
import Logging
import VMM

struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vm",
        abstract: "Run a bare microVM (no container): for kernels, initramfs and device bring-up.",
        subcommands: [VMBoot.self])
}

struct VMBoot: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Boot a Linux bzImage in a microVM and wait until it powers off.",
        discussion: """
        The guest sees an 8250 console on COM1, an i8042 reset line, and each --disk as a
        virtio-blk device (vda, vdb, ...), all described in ACPI. SIGTERM or SIGINT stops the guest.

        Exit status: 0 guest powered off, 2 guest rebooted, 3 guest kernel panicked,
        4 guest crashed (triple fault, KVM error), 5 guest made no progress (--stall-timeout),
        128+N stopped by signal N, 1 bad input.
        """)

    @Option(help: "Linux kernel image (bzImage).") var kernel: String
    @Option(help: "Initial ramdisk (cpio archive, optionally compressed).") var initrd: String?
    @Option(help: "Extra kernel command line, appended to rund's defaults.") var cmdline: String = ""
    @Option(name: .customLong("disk"), help: ArgumentHelp("A virtio-blk disk backed by FILE; add ',ro' for read-only. Repeatable.", valueName: "FILE[,ro]"))
    var disks: [String] = []
    @Option(help: "Number of vCPUs.") var vcpus: Int = 1
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: ArgumentHelp("Guest console: a file path, or '-' for standard output.", valueName: "FILE|-"))
    var console: String = "-"
    @Option(help: ArgumentHelp("End the VM (status 5) when the guest makes no progress for this long: no VM exit while a vCPU runs.",
                               valueName: "SECONDS"))
    var stallTimeout: Double?
    @Flag(help: "Print one JSON object describing how the VM ended.") var json = false
    @Flag(help: "Log VMM internals to standard error.") var verbose = false

    func run() throws {
        var configuration = VMConfiguration(
            kernelPath: kernel, initrdPath: initrd, extraCommandLine: cmdline, memoryMiB: memory, vcpuCount: vcpus,
            disks: try disks.map(Self.parseDisk), console: console == "-" ? .standardOutput : .file(console))
        configuration.stallTimeout = stallTimeout.map { .milliseconds(Int64($0 * 1000)) }
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

/// A one-line user-facing error: ArgumentParser prints "Error: <message>" and exits 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
