import ArgumentParser

// Placeholder: replaced by the real command.
struct BenchCgroups: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cgroups", abstract: "Not yet available.")
    func run() async throws { throw ValidationError("rund cgroups is not implemented yet") }
}
