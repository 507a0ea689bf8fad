import ArgumentParser

// Placeholder: replaced by the real command.
struct VMCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vm", abstract: "Not yet available.")
    func run() async throws { throw ValidationError("rund vm is not implemented yet") }
}
