import ArgumentParser
import Foundation
import HostOS
import KVM
import Sandbox

/// `rund template`: microVM templates, from which sandboxes start as copy-on-write clones.
struct TemplateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "template",
        abstract: "Create, list and remove microVM templates (sandboxes start as clones of them).",
        discussion: """
            A template is a guest booted once with rund's kernel and agent, saved when its agent \
            is ready: memory, vCPUs, interrupt controllers, clock and devices, under \
            <root>/templates/NAME. `rund run` then starts a sandbox of the same memory size and \
            vCPU count as a clone of it (its memory shared copy-on-write with every other clone) \
            instead of booting a kernel; `--no-template` forces a cold boot. A template made for \
            another kernel or agent is not used: remove it and create it again (docs/templates.md).
            """,
        subcommands: [Create.self, List.self, Remove.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Boot a guest to its agent's readiness and save it as a template.")

        @OptionGroup var rootOptions: RootOptions
        @Option(help: "Template name (A-Z a-z 0-9 _ . -, at most 64).") var name: String = "default"
        @Option(help: "Guest memory in MiB: sandboxes of this size use the template.") var memory: Int = 256
        @Option(help: "Number of vCPUs: sandboxes with this many use the template.") var vcpus: Int = 1
        @Option(help: "The static guest agent (default: rund-agent next to the rund binary).") var agent: String?
        @Option(help: ArgumentHelp("Write the template guest's serial console to FILE.", valueName: "FILE"))
        var console: String?
        @Option(
            help: ArgumentHelp(
                "The guest kernel to boot: rund or stock (default: rund when built, else stock). Sandboxes use the "
                    + "template only when they boot the same kernel.", valueName: "rund|stock"))
        var kernel: GuestKernel?
        @Flag(help: "Print the template's manifest as JSON.") var json = false

        func run() async throws {
            try await ImageCommand.reportingFailure {
                if KVMHostProbe.flavor() == .pvm {
                    throw CLIError(
                        "this host's KVM is PVM and cannot boot the guest kernel; make and use templates in the rig: scripts/rig-run --script FILE"
                    )
                }
                let sandbox = Sandbox(
                    stateRoot: StateRoot.resolve(rootOptions.root), agentPath: agent ?? RunCommand.agentNextToRund(), kernel: kernel)
                let manifest = try sandbox.createTemplate(name: name, memoryMiB: memory, vcpuCount: vcpus, console: console)
                if json {
                    try printJSON(manifest)
                } else {
                    print(
                        "created template \(manifest.name): \(manifest.memoryMiB) MiB, \(manifest.vcpuCount) vCPU, kernel \(manifest.dependencies.kernelVersion), booted in \(manifest.bootMilliseconds) ms"
                    )
                }
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List templates and whether they can be used.")

        @OptionGroup var rootOptions: RootOptions
        @Option(help: "The static guest agent that sandboxes would use (default: rund-agent next to the rund binary).")
        var agent: String?
        @Flag(help: "Print a JSON array.") var json = false

        struct Entry: Encodable {
            let name: String
            /// Sandboxes started now can be cloned from it.
            let usable: Bool
            /// Why it cannot be used (damaged, or made for another kernel or agent).
            let problem: String?
            let manifest: TemplateManifest?
        }

        func run() async throws {
            try await ImageCommand.reportingFailure {
                let root = StateRoot.resolve(rootOptions.root)
                let sandbox = Sandbox(stateRoot: root, agentPath: agent ?? RunCommand.agentNextToRund())
                let current = try? sandbox.currentTemplateDependencies()
                let entries = try TemplateStore(stateRoot: root).list().map { name, manifest -> Entry in
                    switch manifest {
                    case .failure(let error):
                        return Entry(name: name, usable: false, problem: error.description, manifest: nil)
                    case .success(let manifest):
                        let problem =
                            current.map { TemplateStore.problem(manifest, current: $0) }
                            ?? "the current kernel or agent cannot be found"
                        return Entry(name: name, usable: problem == nil, problem: problem, manifest: manifest)
                    }
                }
                if json {
                    try printJSON(entries)
                    return
                }
                print(ImageCommand.pad("NAME", 20) + ImageCommand.pad("MEMORY", 10) + ImageCommand.pad("VCPUS", 7) + "STATUS")
                for entry in entries {
                    print(
                        ImageCommand.pad(entry.name, 20) + ImageCommand.pad(entry.manifest.map { "\($0.memoryMiB) MiB" } ?? "-", 10)
                            + ImageCommand.pad(entry.manifest.map { String($0.vcpuCount) } ?? "-", 7)
                            + (entry.problem.map { "unusable: \($0)" } ?? "ready"))
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm", abstract: "Remove templates (sandboxes already cloned from them run on).")

        @OptionGroup var rootOptions: RootOptions
        @Argument(help: "Template names, as `rund template ls` shows them.") var names: [String]

        func run() async throws {
            try await ImageCommand.reportingFailure {
                let store = TemplateStore(stateRoot: StateRoot.resolve(rootOptions.root))
                for name in names {
                    guard try store.remove(name) else { throw CLIError("there is no template \(name): see `rund template ls`") }
                    print("removed template \(name)")
                }
            }
        }
    }
}
