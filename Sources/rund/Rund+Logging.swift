import ArgumentParser
import Foundation
import Logging

extension Rund {
    /// Bootstraps logging before any command runs: libraries log through swift-log; the CLI shows
    /// warnings and errors on stderr unless RUND_LOG_LEVEL (trace, debug, info, ...) asks for more.
    static func main() async {
        let level = ProcessInfo.processInfo.environment["RUND_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
