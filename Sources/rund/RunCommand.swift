import ArgumentParser
import Foundation
import HostOS
import KVM
import Logging
import Sandbox

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command in a new sandbox: a container of an image inside its own microVM.",
        discussion: """
        The image must be in the store (`rund image import` or `rund image pull`). Without CMD the \
        image's Entrypoint and Cmd run; with it, CMD replaces Cmd. stdout and stderr are streamed.

        Exit status: the process's, 128+N when signal N ended it, 125 when rund itself failed.

        Needs a /dev/kvm that boots stock kernels; on a PVM host use scripts/rig-run.
        """)

    @OptionGroup var rootOptions: RootOptions
    @Option(help: "Image reference in the store.") var image: String
    @Option(help: "Guest memory in MiB.") var memory: Int = 256
    @Option(help: "Number of vCPUs.") var vcpus: Int = 1
    @Option(name: .customLong("env"), help: ArgumentHelp("Environment entry for the process. Repeatable.", valueName: "K=V"))
    var environment: [String] = []
    @Option(help: "Working directory inside the container (default: the image's, else /).") var workdir: String?
    @Option(help: ArgumentHelp("Numeric user (default: the image's, else root).", valueName: "UID[:GID]")) var user: String?
    @Option(help: "The static guest agent (default: rund-agent next to the rund binary).") var agent: String?
    @Option(help: ArgumentHelp("Write the guest's serial console to FILE (for debugging boots).", valueName: "FILE"))
    var console: String?
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    func run() async throws {
        if KVMHostProbe.flavor() == .pvm {
            throw CLIError("this host's KVM is PVM and cannot boot the guest kernel; run it in the rig: scripts/rig-run [options] -- CMD")
        }
        let argv = command.first == "--" ? Array(command.dropFirst()) : command
        let spec = SandboxSpec(
            id: "run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))", image: image, command: argv,
            environment: environment, workingDirectory: workdir, user: try user.map(SandboxSpec.parseUser),
            memoryMiB: memory, vcpuCount: vcpus, consolePath: console)
        let sandbox = Sandbox(stateRoot: StateRoot.resolve(rootOptions.root), agentPath: agent ?? Self.agentNextToRund())
        // Ctrl-C and SIGTERM go to the process; its exit (128+N) ends rund.
        let signals = SandboxSignals()
        try SignalForwarder.forward([SIGINT, SIGTERM]) { signals.send($0) }
        let status: Int32
        do {
            status = try await sandbox.run(spec: spec, signals: signals) { stream, bytes in
                let handle = stream == .stdout ? FileHandle.standardOutput : FileHandle.standardError
                handle.write(Data(bytes))
            }
        } catch let error as CLIError {
            throw error
        } catch {
            FileHandle.standardError.write(Data("rund: \(error)\n".utf8))
            throw ExitCode(125)
        }
        if status != 0 { throw ExitCode(status) }
    }

    static func agentNextToRund() -> String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("rund-agent").path
    }
}
