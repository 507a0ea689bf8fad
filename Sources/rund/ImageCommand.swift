import ArgumentParser

// Placeholder: replaced by the real command.
struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "image", abstract: "Not yet available.")
    func run() async throws { throw ValidationError("rund image is not implemented yet") }
}
