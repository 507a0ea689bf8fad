#if canImport(Glibc)
import Glibc
#endif
import CLinux

extension FileDescriptor {
    /// poll(2) for readability (or hang-up); false on timeout.
    public func waitReadable(milliseconds: Int32) throws -> Bool {
        var request = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        let ready = try retryingInterrupts("poll") { poll(&request, 1, milliseconds) }
        return ready > 0
    }
}

extension FileDescriptor {
    /// An owned copy (close-on-exec) of a descriptor this code does not own, such as 0.
    public static func duplicate(_ rawValue: Int32) throws -> FileDescriptor {
        FileDescriptor(adopting: try retryingInterrupts("dup") { rund_fcntl_int(rawValue, F_DUPFD_CLOEXEC, 0) })
    }

    /// poll(2) without a timeout until this descriptor or `other` is readable (or hung up).
    /// Returns true when this one is, false when only `other` is.
    public func waitReadable(or other: FileDescriptor) throws -> Bool {
        var requests = [pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0),
                        pollfd(fd: other.rawValue, events: Int16(POLLIN), revents: 0)]
        while true {
            _ = try retryingInterrupts("poll") { poll(&requests, 2, -1) }
            if requests[1].revents != 0 { return false }
            if requests[0].revents != 0 { return true }
        }
    }
}
