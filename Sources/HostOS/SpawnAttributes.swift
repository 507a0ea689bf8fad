#if canImport(Glibc)
import Glibc
#endif

/// posix_spawn attributes every child of rund gets: an empty signal mask and default signal
/// dispositions. Children otherwise inherit the spawning thread's mask, and Swift concurrency /
/// libdispatch threads block every signal: such a child ignores SIGTERM and never sees SIGCHLD.
enum SpawnAttributes {
    static func withCleanSignals<R>(extraFlags: Int16 = 0, _ body: (UnsafePointer<posix_spawnattr_t>) -> R) -> R {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF) | extraFlags)
        return body(&attributes)
    }
}
