#if canImport(Glibc)
import Glibc
#endif

extension FileDescriptor {
    /// poll(2) for readability (or hang-up); false on timeout.
    public func waitReadable(milliseconds: Int32) throws -> Bool {
        var request = pollfd(fd: rawValue, events: Int16(POLLIN), revents: 0)
        let ready = try retryingInterrupts("poll") { poll(&request, 1, milliseconds) }
        return ready > 0
    }
}
