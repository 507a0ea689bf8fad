#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// AF_VSOCK stream sockets: the agent (guest side) listens on a port of any CID and accepts the
/// host's connections with `FileDescriptor.accept()`; a host reaches a guest behind vhost-vsock
/// with `connect`.
public enum VsockSocket {
    /// Binds (CID any) and listens on `port`; needs the guest's vsock transport loaded.
    public static func listen(port: UInt32, backlog: Int32 = 16) throws -> FileDescriptor {
        let fd = try retryingInterrupts("vsock listen", subject: "port \(port)") {
            rund_vsock_listen(port, backlog)
        }
        return FileDescriptor(adopting: fd)
    }

    /// Connects to `cid`:`port`, waiting at most `timeoutMilliseconds` for the guest's answer.
    public static func connect(cid: UInt32, port: UInt32, timeoutMilliseconds: Int32) throws -> FileDescriptor {
        let fd = try retryingInterrupts("vsock connect", subject: "cid \(cid) port \(port)") {
            rund_vsock_connect(cid, port, timeoutMilliseconds)
        }
        return FileDescriptor(adopting: fd)
    }
}
