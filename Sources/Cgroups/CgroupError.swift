/// A cgroup failure a user can act on: one line saying what failed and what to do.
public struct CgroupError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case failed
        /// No cgroup hierarchy (v1 controllers or the v2 unified tree) that rund can use.
        case noHierarchy
    }

    public let kind: Kind
    public let message: String

    public init(_ message: String) { self.init(.failed, message) }

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
