#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Unix stream sockets: socketpairs for in-process peers, listen/accept/connect by path.
public enum UnixSocket {
    /// A connected pair of stream sockets (close-on-exec).
    public static func pair() throws -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        _ = try retryingInterrupts("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (FileDescriptor(adopting: fds[0]), FileDescriptor(adopting: fds[1]))
    }

    /// Binds and listens on `path` (which must not exist yet).
    public static func listen(path: String, backlog: Int32 = 64) throws -> FileDescriptor {
        let socket = try makeSocket(subject: path)
        _ = try withAddress(path) { address, length in
            try retryingInterrupts("bind", subject: path) { bind(socket.rawValue, address, length) }
        }
        _ = try retryingInterrupts("listen", subject: path) { Glibc.listen(socket.rawValue, backlog) }
        return socket
    }

    /// Connects to a listening socket at `path`.
    public static func connect(path: String) throws -> FileDescriptor {
        let socket = try makeSocket(subject: path)
        _ = try withAddress(path) { address, length in
            try retryingInterrupts("connect", subject: path) { Glibc.connect(socket.rawValue, address, length) }
        }
        return socket
    }

    private static func makeSocket(subject: String) throws -> FileDescriptor {
        let fd = try retryingInterrupts("socket", subject: subject) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        return FileDescriptor(adopting: fd)
    }

    private static func withAddress<T>(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T
    ) throws -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw SystemError("bind", errno: ENAMETOOLONG, subject: path)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return try withUnsafePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                try body(generic, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}

extension FileDescriptor {
    /// accept4(2) with close-on-exec; blocks until a peer connects.
    public func accept() throws -> FileDescriptor {
        let fd = try retryingInterrupts("accept") { rund_accept4(rawValue, Int32(SOCK_CLOEXEC.rawValue)) }
        return FileDescriptor(adopting: fd)
    }

    /// shutdown(2) of both directions: wakes a thread blocked in read or accept on this socket
    /// without closing the descriptor under it.
    public func shutdownBoth() {
        _ = Glibc.shutdown(rawValue, Int32(SHUT_RDWR))
    }

    /// Sends without raising SIGPIPE when the peer has gone (EPIPE is returned instead).
    public func sendAll(_ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = try retryingInterrupts("send") {
                send(rawValue, buffer.baseAddress! + done, buffer.count - done, Int32(MSG_NOSIGNAL))
            }
            done += n
        }
    }
}
