#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS

/// The guest's usage from /proc (the whole VM is the sandbox, so VM-wide numbers are the
/// container's): CPU time from /proc/stat, memory from /proc/meminfo, OOM kills from
/// /proc/vmstat, processes from /proc's pid directories.
public enum GuestStats {
    /// USER_HZ, the unit of /proc/stat (100 on every Linux ABI we run).
    static let nanosecondsPerTick: UInt64 = 10_000_000

    public static func collect(procRoot: String = "/proc") -> AgentStatsResponse {
        var response = AgentStatsResponse()
        if let text = readText(procRoot + "/stat") { response.cpu = cpu(fromStat: text) }
        if let text = readText(procRoot + "/meminfo") { response.memory = memory(fromMeminfo: text) }
        response.memory.oomKills = oomKills(procRoot: procRoot)
        if let directory = try? FileDescriptor.openDirectory(procRoot),
            let names = try? directory.directoryEntries()
        {
            response.pids.current = UInt64(names.filter { !$0.isEmpty && $0.allSatisfy(\.isNumber) }.count)
        }
        return response
    }

    /// How many processes the guest's OOM killer has killed since boot (0 if unknown). The VM
    /// is the sandbox, so a kill anywhere in it is one of the container's.
    public static func oomKills(procRoot: String = "/proc") -> UInt64 {
        readText(procRoot + "/vmstat").flatMap { fields($0, separator: " ")["oom_kill"] } ?? 0
    }

    /// The aggregate "cpu" line: user+nice as user time, system+irq+softirq as system time.
    static func cpu(fromStat text: String) -> AgentCPUStats {
        var stats = AgentCPUStats()
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return stats }
        let ticks = line.split(separator: " ").dropFirst().map { UInt64($0) ?? 0 }
        func tick(_ index: Int) -> UInt64 { index < ticks.count ? ticks[index] : 0 }
        stats.userNanos = (tick(0) + tick(1)) * nanosecondsPerTick
        stats.systemNanos = (tick(2) + tick(5) + tick(6)) * nanosecondsPerTick
        stats.usageNanos = stats.userNanos + stats.systemNanos
        return stats
    }

    /// Usage is MemTotal - MemAvailable; the limit is the VM's memory.
    static func memory(fromMeminfo text: String) -> AgentMemoryStats {
        let values = fields(text, separator: ":")
        func bytes(_ key: String) -> UInt64 { (values[key] ?? 0) * 1024 }
        var stats = AgentMemoryStats()
        stats.limitBytes = bytes("MemTotal")
        stats.usageBytes = stats.limitBytes - min(stats.limitBytes, bytes("MemAvailable"))
        stats.rssBytes = bytes("AnonPages")
        stats.cacheBytes = bytes("Cached")
        return stats
    }

    /// "key<sep> value [unit]" lines as key → value.
    static func fields(_ text: String, separator: Character) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for line in text.split(separator: "\n") {
            guard let split = line.firstIndex(of: separator) else { continue }
            let key = String(line[..<split])
            let value = line[line.index(after: split)...].split(separator: " ").first.flatMap { UInt64($0) }
            if let value { result[key] = value }
        }
        return result
    }

    static func readText(_ path: String) -> String? {
        guard let file = try? FileDescriptor.open(path, O_RDONLY | O_CLOEXEC),
            let bytes = try? file.readToEnd(limit: 1 << 20)
        else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
