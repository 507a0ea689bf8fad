/// A storage failure the user can act on: one line saying what failed and what to do.
public struct StorageError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case badInput, unsupported, digestMismatch, notFound, registry, io
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
