import HostOS

/// A reliable, ordered, bidirectional byte stream that ttrpc frames travel over: a Unix socket,
/// one end of a socketpair, or an in-process virtio-vsock connection.
///
/// Calls block; the TTRPC client and server call `read` only from their own OS threads, never
/// from the Swift concurrency pool.
public protocol ByteStream: AnyObject, Sendable {
    /// Reads at least one byte into `buffer` and returns how many; returns 0 at end of stream.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    /// Writes every byte of `bytes`, or throws.
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// Ends the stream in both directions. Idempotent; a `read` blocked in another thread
    /// returns 0 (or throws) promptly.
    func close()
}

/// A `ByteStream` over a connected stream socket (Unix socket or socketpair end).
public final class SocketStream: ByteStream {
    private let descriptor: FileDescriptor

    /// Takes ownership of `descriptor`, a connected stream socket.
    public init(_ descriptor: FileDescriptor) {
        self.descriptor = descriptor
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try descriptor.read(into: buffer)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try descriptor.sendAll(bytes)
    }

    /// Shuts the socket down rather than closing it, so a reader blocked on it wakes up and no
    /// other thread's read can land on a recycled descriptor number; the descriptor itself is
    /// closed when the last reference goes.
    public func close() {
        descriptor.shutdownBoth()
    }
}

extension SocketStream {
    /// A connected pair of in-process streams (a Unix socketpair).
    public static func pair() throws -> (SocketStream, SocketStream) {
        let (a, b) = try UnixSocket.pair()
        return (SocketStream(a), SocketStream(b))
    }

    /// Connects to a ttrpc server listening on the Unix socket at `path`.
    public static func connect(path: String) throws -> SocketStream {
        SocketStream(try UnixSocket.connect(path: path))
    }
}
