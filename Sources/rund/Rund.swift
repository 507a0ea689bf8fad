import ArgumentParser

@main
struct Rund: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rund",
        abstract: "A secure container runtime: one KVM microVM per function container.",
        discussion: """
            State lives under one root: --root, else $RUND_ROOT, else /var/lib/rund.
            Run `rund doctor` first to see what this host can do.
            """,
        subcommands: [
            DoctorCommand.self,
            RunCommand.self,
            ImageCommand.self,
            TemplateCommand.self,
            VMCommand.self,
            BenchCommand.self,
            GCCommand.self,
        ]
    )
}

/// Options every command that touches state shares.
struct RootOptions: ParsableArguments {
    @Option(name: .long, help: "State root (default: $RUND_ROOT or /var/lib/rund).")
    var root: String?
}
