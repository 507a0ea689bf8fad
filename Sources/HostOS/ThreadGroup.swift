#if canImport(Glibc)
import Glibc
#endif

/// Runs one body on N plain OS threads at once and waits for all: for load generators that
/// need real concurrency (the Swift concurrency pool has only one thread per core).
public enum ThreadGroup {
    /// Calls `body(index)` on `count` new threads; returns when every one has finished.
    public static func run(count: Int, _ body: @escaping @Sendable (Int) -> Void) throws {
        var threads: [pthread_t] = []
        defer { for thread in threads { pthread_join(thread, nil) } }
        for index in 0..<count {
            let context = Unmanaged.passRetained(Job(index: index, body: body)).toOpaque()
            var thread = pthread_t()
            let result = pthread_create(
                &thread, nil,
                { context in
                    let job = Unmanaged<Job>.fromOpaque(context!).takeRetainedValue()
                    job.body(job.index)
                    return nil
                }, context)
            guard result == 0 else {
                Unmanaged<Job>.fromOpaque(context).release()
                throw SystemError("pthread_create", errno: result, subject: "thread \(index) of \(count)")
            }
            threads.append(thread)
        }
    }

    private final class Job: Sendable {
        let index: Int
        let body: @Sendable (Int) -> Void
        init(index: Int, body: @escaping @Sendable (Int) -> Void) {
            self.index = index
            self.body = body
        }
    }
}
