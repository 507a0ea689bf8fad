#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// A fire-and-forget OS thread for blocking work (pipe drains, stdin writes, the reaper): it
/// detaches itself so nothing has to join it and its stack is freed when it ends.
enum DetachedThread {
    static func start(name: String, _ body: @escaping @Sendable () -> Void) throws {
        _ = try OSThread.spawn(name: name) {
            pthread_detach(pthread_self())
            body()
        }
    }
}
