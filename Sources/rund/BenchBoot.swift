import ArgumentParser

// Placeholder: replaced by the real command.
struct BenchBoot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "boot", abstract: "Not yet available.")
    func run() async throws { throw ValidationError("rund boot is not implemented yet") }
}
