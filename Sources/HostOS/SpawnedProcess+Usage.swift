#if canImport(Glibc)
import Glibc
#endif

extension SpawnedProcess {
    public struct Usage: Sendable {
        /// Exit status, or 128+signal.
        public let status: Int32
        /// Peak resident set size of the child (ru_maxrss).
        public let peakRSSKiB: Int
    }

    /// wait4(2): waits for exit and returns the child's resource usage with its status.
    public func waitWithUsage() throws -> Usage {
        var status: Int32 = 0
        var usage = rusage()
        _ = try retryingInterrupts("wait4") { wait4(pid, &status, 0, &usage) }
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Usage(status: code, peakRSSKiB: usage.ru_maxrss)
    }
}
