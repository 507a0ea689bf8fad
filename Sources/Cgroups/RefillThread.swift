import HostOS
import Synchronization

/// The pool's refill worker: a plain OS thread (its work is blocking mkdirs, which must not
/// occupy the Swift concurrency pool) that runs `work` each time it is poked, until stopped.
final class RefillThread: Sendable {
    private let wakeup: EventFD
    private let stopping = Atomic<Bool>(false)
    private let thread: Mutex<OSThread?> = Mutex(nil)

    private init(wakeup: EventFD) {
        self.wakeup = wakeup
    }

    static func start(_ work: @escaping @Sendable () -> Void) throws -> RefillThread {
        let refill = RefillThread(wakeup: try EventFD())
        let thread = try OSThread.spawn(name: "rund-cg-refill") { [wakeup = refill.wakeup, refill] in
            while !refill.isStopping {
                _ = try? wakeup.wait()
                if refill.isStopping { return }
                work()
            }
        }
        refill.thread.withLock { $0 = thread }
        return refill
    }

    func poke() { try? wakeup.signal() }

    func stop() {
        stopping.store(true, ordering: .releasing)
        poke()
        thread.withLock { thread in
            thread?.join()
            thread = nil
        }
    }

    private var isStopping: Bool { stopping.load(ordering: .acquiring) }
}
