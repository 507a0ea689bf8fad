#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// eventfd(2): a counter the kernel (irqfd/ioeventfd) and our threads signal each other through.
public final class EventFD: Sendable {
    public let descriptor: FileDescriptor

    public init(nonBlocking: Bool = false) throws {
        let flags = Int32(EFD_CLOEXEC) | (nonBlocking ? Int32(EFD_NONBLOCK) : 0)
        let fd = try retryingInterrupts("eventfd") { eventfd(0, flags) }
        descriptor = FileDescriptor(adopting: fd)
    }

    public func signal(_ value: UInt64 = 1) throws {
        var v = value
        _ = try retryingInterrupts("eventfd write") { Glibc.write(descriptor.rawValue, &v, 8) }
    }

    /// Blocks until signalled (unless non-blocking) and returns the accumulated count.
    public func wait() throws -> UInt64 {
        var v: UInt64 = 0
        _ = try retryingInterrupts("eventfd read") { Glibc.read(descriptor.rawValue, &v, 8) }
        return v
    }
}
