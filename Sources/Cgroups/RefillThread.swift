#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Synchronization

/// A plain OS thread (not the Swift concurrency pool: its work is blocking mkdirs) that runs
/// `work` each time it is poked, until stopped.
final class RefillThread: @unchecked Sendable {
    private let wakeup: EventFD
    private let stopping = Atomic<Bool>(false)
    private let work: @Sendable () -> Void
    // Written once in start() before any other thread can see it, read by stop().
    private var thread = pthread_t()

    private init(wakeup: EventFD, work: @escaping @Sendable () -> Void) {
        self.wakeup = wakeup
        self.work = work
    }

    static func start(_ work: @escaping @Sendable () -> Void) throws -> RefillThread {
        let refill = RefillThread(wakeup: try EventFD(), work: work)
        let context = Unmanaged.passRetained(refill).toOpaque()
        let result = pthread_create(&refill.thread, nil, { context in
            let refill = Unmanaged<RefillThread>.fromOpaque(context!).takeRetainedValue()
            refill.loop()
            return nil
        }, context)
        guard result == 0 else {
            Unmanaged<RefillThread>.fromOpaque(context).release()
            throw SystemError("pthread_create", errno: result, subject: "cgroup pool refill")
        }
        return refill
    }

    func poke() { try? wakeup.signal() }

    func stop() {
        stopping.store(true, ordering: .releasing)
        poke()
        pthread_join(thread, nil)
    }

    private func loop() {
        while !stopping.load(ordering: .acquiring) {
            _ = try? wakeup.wait()
            if stopping.load(ordering: .acquiring) { return }
            work()
        }
    }
}
