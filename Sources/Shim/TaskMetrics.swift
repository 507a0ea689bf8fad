#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS
import SwiftProtobuf

/// Stats as containerd expects them: `io.containerd.cgroups.v2.Metrics` (or `.v1.Metrics` on a
/// cgroup v1 host), read from the sandbox's own host cgroup, which holds the whole sandbox (the
/// VM's memory and vCPU threads and the shim). A sandbox running without a cgroup reports the
/// guest's view instead (as v2 Metrics).
enum TaskMetrics {
    /// Reads one file of the sandbox's cgroup: the first directory that has it.
    typealias Reader = (String) -> String?

    static func reader(paths: [String]) -> Reader {
        { name in
            for path in paths {
                if let bytes = try? FileDescriptor.open(path + "/" + name, O_RDONLY).readToEnd(limit: 1 << 20) {
                    return String(decoding: bytes, as: UTF8.self)
                }
            }
            return nil
        }
    }

    static func any(_ message: some SwiftProtobuf.Message) throws -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = type(of: message).protoMessageName
        any.value = try message.serializedData()
        return any
    }

    static func isV2(_ read: Reader) -> Bool { read("cgroup.controllers") != nil }

    static func value(_ text: String?) -> UInt64 {
        guard let text = text?.split(separator: "\n").first.map({ $0.trimmingSpaces }) else { return 0 }
        return UInt64(text) ?? 0  // "max" (no limit) reads as 0, as containerd's own stats do
    }

    /// `key value` lines (memory.stat, cpu.stat).
    static func table(_ text: String?) -> [String: UInt64] {
        var result: [String: UInt64] = [:]
        for line in (text ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 2, let number = UInt64(fields[1]) { result[String(fields[0])] = number }
        }
        return result
    }

    static func v2(_ read: Reader) -> Io_Containerd_Cgroups_V2_Metrics {
        let memory = table(read("memory.stat"))
        let cpu = table(read("cpu.stat"))
        return .with {
            $0.pids = .with {
                $0.current = value(read("pids.current"))
                $0.limit = value(read("pids.max"))
            }
            $0.cpu = .with {
                $0.usageUsec = cpu["usage_usec"] ?? 0
                $0.userUsec = cpu["user_usec"] ?? 0
                $0.systemUsec = cpu["system_usec"] ?? 0
                $0.nrPeriods = cpu["nr_periods"] ?? 0
                $0.nrThrottled = cpu["nr_throttled"] ?? 0
                $0.throttledUsec = cpu["throttled_usec"] ?? 0
            }
            $0.memory = .with {
                $0.usage = value(read("memory.current"))
                $0.usageLimit = value(read("memory.max"))
                $0.swapUsage = value(read("memory.swap.current"))
                $0.swapLimit = value(read("memory.swap.max"))
                $0.anon = memory["anon"] ?? 0
                $0.file = memory["file"] ?? 0
                $0.kernelStack = memory["kernel_stack"] ?? 0
                $0.slab = memory["slab"] ?? 0
                $0.shmem = memory["shmem"] ?? 0
                $0.fileMapped = memory["file_mapped"] ?? 0
                $0.fileDirty = memory["file_dirty"] ?? 0
                $0.activeAnon = memory["active_anon"] ?? 0
                $0.inactiveAnon = memory["inactive_anon"] ?? 0
                $0.activeFile = memory["active_file"] ?? 0
                $0.inactiveFile = memory["inactive_file"] ?? 0
                $0.unevictable = memory["unevictable"] ?? 0
                $0.pgfault = memory["pgfault"] ?? 0
                $0.pgmajfault = memory["pgmajfault"] ?? 0
            }
            let events = table(read("memory.events"))
            $0.memoryEvents = .with {
                $0.low = events["low"] ?? 0
                $0.high = events["high"] ?? 0
                $0.max = events["max"] ?? 0
                $0.oom = events["oom"] ?? 0
                $0.oomKill = events["oom_kill"] ?? 0
            }
        }
    }

    static func v1(_ read: Reader) -> Io_Containerd_Cgroups_V1_Metrics {
        let memory = table(read("memory.stat"))
        let cpu = table(read("cpu.stat"))
        let cpuTimes = table(read("cpuacct.stat"))
        let tick = UInt64(max(1, sysconf(Int32(_SC_CLK_TCK))))
        return .with {
            $0.pids = .with {
                $0.current = value(read("pids.current"))
                $0.limit = value(read("pids.max"))
            }
            $0.cpu = .with {
                $0.usage = .with {
                    $0.total = value(read("cpuacct.usage"))
                    $0.user = (cpuTimes["user"] ?? 0) * (1_000_000_000 / tick)
                    $0.kernel = (cpuTimes["system"] ?? 0) * (1_000_000_000 / tick)
                }
                $0.throttling = .with {
                    $0.periods = cpu["nr_periods"] ?? 0
                    $0.throttledPeriods = cpu["nr_throttled"] ?? 0
                    $0.throttledTime = cpu["throttled_time"] ?? 0
                }
            }
            $0.memory = .with {
                $0.cache = memory["cache"] ?? 0
                $0.rss = memory["rss"] ?? 0
                $0.mappedFile = memory["mapped_file"] ?? 0
                $0.pgFault = memory["pgfault"] ?? 0
                $0.pgMajFault = memory["pgmajfault"] ?? 0
                $0.totalCache = memory["total_cache"] ?? 0
                $0.totalRss = memory["total_rss"] ?? 0
                $0.usage = .with {
                    $0.usage = value(read("memory.usage_in_bytes"))
                    $0.max = value(read("memory.max_usage_in_bytes"))
                    $0.limit = value(read("memory.limit_in_bytes"))
                    $0.failcnt = value(read("memory.failcnt"))
                }
            }
        }
    }

    /// The guest's own view (no host cgroup): CPU, memory and pids of the whole VM.
    static func fromGuest(_ stats: AgentStatsResponse) -> Io_Containerd_Cgroups_V2_Metrics {
        .with {
            $0.pids = .with {
                $0.current = stats.pids.current
                $0.limit = stats.pids.limit
            }
            $0.cpu = .with {
                $0.usageUsec = stats.cpu.usageNanos / 1000
                $0.userUsec = stats.cpu.userNanos / 1000
                $0.systemUsec = stats.cpu.systemNanos / 1000
            }
            $0.memory = .with {
                $0.usage = stats.memory.usageBytes
                $0.usageLimit = stats.memory.limitBytes
                $0.anon = stats.memory.rssBytes
                $0.file = stats.memory.cacheBytes
            }
            $0.memoryEvents = .with { $0.oomKill = stats.memory.oomKills }
        }
    }
}
