/// A cgroup failure a user can act on: one line saying what failed and what to do.
public struct CgroupError: Error, CustomStringConvertible, Sendable, Equatable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
