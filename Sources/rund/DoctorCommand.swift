import ArgumentParser

// Placeholder: replaced by the real command.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "doctor", abstract: "Not yet available.")
    func run() async throws { throw ValidationError("rund doctor is not implemented yet") }
}
