import TTRPC

/// A shim failure, as one line, with the status containerd should see when it ends a call.
public struct ShimError: Error, CustomStringConvertible, Sendable, Equatable {
    public let code: TTRPCStatusCode
    public let description: String

    public init(_ code: TTRPCStatusCode, _ description: String) {
        self.code = code
        self.description = description
    }

    public init(_ description: String) {
        self.init(.unknown, description)
    }

    static func notFound(_ what: String) -> ShimError { ShimError(.notFound, "\(what): not found") }
}

extension TTRPCStatus {
    /// How a Task handler's error reaches containerd: statuses and shim errors keep their code,
    /// anything else (a sandbox or storage failure, already one line) is UNKNOWN, as runc's are.
    init(shimError error: any Error) {
        switch error {
        case let status as TTRPCStatus: self = status
        case let error as ShimError: self.init(error.code, error.description)
        default: self.init(.unknown, "\(error)")
        }
    }
}
