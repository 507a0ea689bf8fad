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
        var requests = [
            pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: other.rawValue, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            _ = try retryingInterrupts("poll") { poll(&requests, 2, -1) }
            if requests[1].revents != 0 { return false }
            if requests[0].revents != 0 { return true }
        }
    }
}

/// Which of three descriptors `waitReadable(orEither:_:)` found ready first.
public enum ReadyDescriptor: Sendable, Equatable {
    case first, second, third
}

extension FileDescriptor {
    /// poll(2) without a timeout until this descriptor, `second` or `third` is readable (or
    /// hung up). When several are, the later ones win: they are the caller's stop requests.
    public func waitReadable(orEither second: FileDescriptor, _ third: FileDescriptor) throws -> ReadyDescriptor {
        var requests = [
            pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: second.rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: third.rawValue, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            _ = try retryingInterrupts("poll") { poll(&requests, 3, -1) }
            if requests[1].revents != 0 { return .second }
            if requests[2].revents != 0 { return .third }
            if requests[0].revents != 0 { return .first }
        }
    }
}

extension FileDescriptor {
    /// poll(2) without a timeout until this descriptor can be written (or has an error or
    /// hang-up: the write then says which) or `other` is readable. True when this one is ready,
    /// false when `other` is (a stop request).
    public func waitWritable(or other: FileDescriptor) throws -> Bool {
        var requests = [
            pollfd(fd: rawValue, events: Int16(POLLOUT), revents: 0),
            pollfd(fd: other.rawValue, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            _ = try retryingInterrupts("poll") { poll(&requests, 2, -1) }
            if requests[1].revents != 0 { return false }
            if requests[0].revents != 0 { return true }
        }
    }

    /// write(2) once; returns the count written (EAGAIN is thrown for a non-blocking descriptor
    /// that is full).
    public func writeSome(_ buffer: UnsafeRawBufferPointer) throws -> Int {
        try retryingInterrupts("write") { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }
}
