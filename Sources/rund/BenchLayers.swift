import ArgumentParser

// Placeholder: replaced by the real command.
struct BenchLayers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "layers", abstract: "Not yet available.")
    func run() async throws { throw ValidationError("rund layers is not implemented yet") }
}
