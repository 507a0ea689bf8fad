#if canImport(Glibc)
import Glibc
#endif

/// A process as pid plus start time (clock ticks after boot), so a recycled pid is not mistaken
/// for the process that owned a cgroup before a crash.
public struct ProcessIdentity: Sendable, Equatable, Hashable, Codable {
    public let pid: Int32
    public let startTime: UInt64

    public init(pid: Int32, startTime: UInt64) {
        self.pid = pid
        self.startTime = startTime
    }

    /// The identity of a running process, or nil if there is none (or it is a zombie).
    public static func of(pid: Int32) -> ProcessIdentity? {
        guard pid > 0, let stat = try? readStat(pid: pid) else { return nil }
        return parse(stat: stat, pid: pid)
    }

    public static func current() -> ProcessIdentity {
        // /proc/self/stat always exists for a live process; a missing /proc is a broken host.
        guard let identity = of(pid: getpid()) else { return ProcessIdentity(pid: getpid(), startTime: 0) }
        return identity
    }

    /// True while this exact process (same pid, same start time) is running.
    public var isAlive: Bool { ProcessIdentity.of(pid: pid) == self }

    /// Parses /proc/<pid>/stat: the command name may contain spaces and ')', so fields are
    /// counted after the last ')'. Field 3 is the state, field 22 the start time.
    package static func parse(stat: String, pid: Int32) -> ProcessIdentity? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", fields[0] != "X", let start = UInt64(fields[19]) else { return nil }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    private static func readStat(pid: Int32) throws -> String {
        let fd = try FileDescriptor.open("/proc/\(pid)/stat", O_RDONLY)
        return try fd.readValue()
    }
}
