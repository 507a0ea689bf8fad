import ArgumentParser

// Placeholder: replaced by the real command.
struct GCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gc", abstract: "Not yet available.")
    func run() async throws { throw ValidationError("rund gc is not implemented yet") }
}
