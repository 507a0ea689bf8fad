#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Synchronization

/// Network namespaces belong to a thread, not to the process: a thread enters one, and the
/// processes it spawns start in it. Named by a path (`/run/netns/NAME`, `/proc/PID/ns/net`).
public enum NetworkNamespace {
    /// Runs `body` on a new thread that has entered the namespace at `path` (network namespaces
    /// are per thread, so the process's other threads are untouched), and returns its result.
    /// Descriptors `body` opens there (a tap, a socket) stay bound to that namespace.
    public static func run<R: Sendable>(in path: String, _ body: @escaping @Sendable () throws -> R) throws -> R {
        let namespace = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC)
        let result = Mutex<Result<R, any Error>?>(nil)
        let thread = try OSThread.spawn(name: "netns") {
            let outcome: Result<R, any Error>
            if rund_setns_network(namespace.rawValue) != 0 {
                outcome = .failure(SystemError("setns", errno: errno, subject: path))
            } else {
                outcome = Result { try body() }
            }
            result.withLock { $0 = outcome }
        }
        thread.join()
        namespace.close()
        guard let outcome = result.withLock({ $0 }) else { throw SystemError("setns", errno: EIO, subject: path) }
        return try outcome.get()
    }

    /// Moves the calling thread (and the processes it spawns from now on) into a new, empty
    /// network namespace with only a loopback interface, which is down. Only for a dedicated
    /// thread (`OSThread`) that ends after its work: the Swift concurrency pool must never run
    /// in such a namespace.
    public static func enterNewForCurrentThread() throws {
        _ = try retryingInterrupts("unshare(CLONE_NEWNET)") { rund_unshare_network() }
    }
}
