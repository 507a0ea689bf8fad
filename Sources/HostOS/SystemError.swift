#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what, and the errno it returned.
/// Every syscall in rund goes through `HostOS` so every failure reads the same way.
public struct SystemError: Error, Equatable, CustomStringConvertible, Sendable {
    public let call: String
    public let errno: Int32
    /// What the call was applied to (a path, a device), when that helps the reader.
    public let subject: String?

    public init(_ call: String, errno: Int32, subject: String? = nil) {
        self.call = call
        self.errno = errno
        self.subject = subject
    }

    /// Captures the current thread's errno.
    public static func last(_ call: String, subject: String? = nil) -> SystemError {
        SystemError(call, errno: Glibc.errno, subject: subject)
    }

    public var message: String { String(cString: strerror(errno)) }

    public var description: String {
        if let subject { return "\(call) \(subject): \(message)" }
        return "\(call): \(message)"
    }
}

/// Runs a call that returns -1 and sets errno on failure, retrying on EINTR.
@inline(__always)
public func retryingInterrupts<T: BinaryInteger>(
    _ call: String, subject: String? = nil, _ body: () -> T
) throws -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = Glibc.errno
        if code == EINTR { continue }
        throw SystemError(call, errno: code, subject: subject)
    }
}
