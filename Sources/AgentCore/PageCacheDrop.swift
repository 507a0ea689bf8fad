#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS

/// An idle guest's page cache back to the host: dirty data is written back (to the sandbox's
/// writable layer, the host's file), then clean page cache and reclaimable slab are dropped.
/// Free page reporting (`FreePageReporting`) hands the freed runs to the host a few seconds
/// later; the guest reads a file again when it next needs it. Unlike a balloon, this touches
/// no page the guest was not already using (a balloon writes the `struct page` of every free
/// page it takes, which in a template's clone makes those pages of the memory map its own),
/// and the guest keeps its free memory, so it needs nothing given back when it wakes.
public enum PageCacheDrop {
    /// 3: the page cache and reclaimable slab (dentries, inodes). Mapped pages (running
    /// programs) and tmpfs stay: Linux drops only what it could read again.
    static let pageCacheAndSlab = "3\n"

    public static func run(procRoot: String = "/proc") throws -> AgentDropCachesResponse {
        var response = AgentDropCachesResponse()
        response.cachedBytesBefore = cachedBytes(procRoot: procRoot)
        sync()
        let file = try FileDescriptor.open(procRoot + "/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC)
        defer { file.close() }
        try file.writeAll(pageCacheAndSlab)
        response.cachedBytesAfter = cachedBytes(procRoot: procRoot)
        return response
    }

    static func cachedBytes(procRoot: String) -> UInt64 {
        GuestStats.readText(procRoot + "/meminfo").map { GuestStats.memory(fromMeminfo: $0).cacheBytes } ?? 0
    }
}
