#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Synchronization

/// A plain OS thread for blocking work (vCPU loops, device I/O) that must never run on the
/// Swift concurrency pool.
public final class OSThread: @unchecked Sendable {
    private var thread: pthread_t = 0
    private let body: @Sendable () -> Void
    private let finished = Atomic<Bool>(false)

    private init(body: @escaping @Sendable () -> Void) {
        self.body = body
    }

    /// Starts `body` on a new thread with the given name (visible in /proc, ≤ 15 bytes).
    public static func spawn(name: String, _ body: @escaping @Sendable () -> Void) throws -> OSThread {
        let thread = OSThread(body: body)
        let context = Unmanaged.passRetained(thread).toOpaque()
        let result = pthread_create(
            &thread.thread, nil,
            { context in
                let thread = Unmanaged<OSThread>.fromOpaque(context!).takeRetainedValue()
                thread.body()
                thread.finished.store(true, ordering: .releasing)
                return nil
            }, context)
        guard result == 0 else {
            Unmanaged<OSThread>.fromOpaque(context).release()
            throw SystemError("pthread_create", errno: result, subject: name)
        }
        _ = rund_pthread_setname(thread.thread, String(name.prefix(15)))
        return thread
    }

    public func join() {
        pthread_join(thread, nil)
    }

    /// Nobody will join this thread: its resources go when it ends.
    public func detach() {
        pthread_detach(thread)
    }

    /// True once the body has returned (the thread is ending; `join` will not block long).
    public var hasEnded: Bool { finished.load(ordering: .acquiring) }

    /// Sends `signal` to this thread (e.g. the kick signal, to interrupt a blocking syscall).
    public func send(signal: Int32) {
        pthread_kill(thread, signal)
    }
}

/// The signal used to interrupt a thread blocked in a syscall (KVM_RUN). Its handler does
/// nothing; installed without SA_RESTART so the syscall returns EINTR.
public enum KickSignal {
    public static let number: Int32 = SIGUSR2

    public static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(number, &action, nil)
    }

    /// Threads inherit their creator's signal mask, and Swift concurrency / libdispatch worker
    /// threads block everything: a thread that must be kickable unblocks the signal itself.
    public static func unblockInCurrentThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, number)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}

/// Blocks signals in the calling thread (new threads inherit the mask), so one thread can
/// `wait` for them synchronously.
public enum SignalMask {
    public static func block(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for one of `signals` (which must be blocked) and returns it.
    public static func wait(_ signals: [Int32]) -> Int32 {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        var received: Int32 = 0
        while sigwait(&set, &received) != 0 {}
        return received
    }
}
