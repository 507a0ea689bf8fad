#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// AF_VSOCK stream sockets as the guest side uses them: the agent listens on a port of any CID
/// and accepts the host's connections with `FileDescriptor.accept()`.
public enum VsockSocket {
    /// Binds (CID any) and listens on `port`; needs the guest's vsock transport loaded.
    public static func listen(port: UInt32, backlog: Int32 = 16) throws -> FileDescriptor {
        let fd = try retryingInterrupts("vsock listen", subject: "port \(port)") {
            rund_vsock_listen(port, backlog)
        }
        return FileDescriptor(adopting: fd)
    }
}
