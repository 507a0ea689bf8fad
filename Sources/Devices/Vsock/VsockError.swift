/// Why a host-side vsock operation failed. Each reads as one line for the caller's error message.
public enum VsockError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The guest reset the connection, or the driver reset the device.
    case connectionReset(port: UInt32)
    /// Nothing in the guest listens on the port (it answered RST).
    case connectionRefused(port: UInt32)
    /// The guest shut its receiving side, or this side already shut down writing.
    case brokenPipe(port: UInt32)
    case timedOut(operation: String)
    /// `listen` on a port that already has a listener.
    case portInUse(UInt32)
    case tooManyConnections(limit: Int)
    /// The stream or listener was closed on this side.
    case closed
    case invalidCID(UInt32)

    public var description: String {
        switch self {
        case .connectionReset(let port): return "vsock connection to guest port \(port) was reset by the guest"
        case .connectionRefused(let port): return "guest refused the vsock connection to port \(port): is the agent listening?"
        case .brokenPipe(let port): return "vsock connection to guest port \(port) no longer accepts data"
        case .timedOut(let operation): return "vsock \(operation) timed out"
        case .portInUse(let port): return "vsock port \(port) already has a listener on the host side"
        case .tooManyConnections(let limit): return "more than \(limit) vsock connections open; close some first"
        case .closed: return "vsock stream or listener is closed"
        case .invalidCID(let cid): return "guest CID \(cid) is reserved; use a value from 3 to 4294967294"
        }
    }
}
