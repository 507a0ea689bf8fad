#if canImport(Glibc)
import Glibc
#endif

/// A FIFO that plain OS threads block on (pthread mutex + condition): the hand-off between
/// async code and a connection's writer thread, and the wait of a blocking client call.
final class BlockingQueue<Element>: @unchecked Sendable {
    // Heap-allocated: pthread objects must not move.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var items: [Element] = []
    private var head = 0
    private var closed = false

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// Appends `item`; false (and the item dropped) once the queue is closed.
    @discardableResult
    func push(_ item: Element) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard !closed else { return false }
        items.append(item)
        pthread_cond_signal(condition)
        return true
    }

    /// Refuses further pushes; `pop` drains what is queued, then returns nil.
    func close() {
        pthread_mutex_lock(mutex)
        closed = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    /// The next item; blocks while empty. Nil when closed and drained, or after
    /// `timeoutNanoseconds` (when given) without an item.
    func pop(timeoutNanoseconds: UInt64? = nil) -> Element? {
        var deadline = timespec()
        if let timeoutNanoseconds {
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let total = UInt64(deadline.tv_nsec) + timeoutNanoseconds
            deadline.tv_sec += Int(total / 1_000_000_000)
            deadline.tv_nsec = Int(total % 1_000_000_000)
        }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while head == items.count {
            if closed { return nil }
            if timeoutNanoseconds != nil {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT, head == items.count {
                    return nil
                }
            } else {
                pthread_cond_wait(condition, mutex)
            }
        }
        let item = items[head]
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        }
        return item
    }
}
