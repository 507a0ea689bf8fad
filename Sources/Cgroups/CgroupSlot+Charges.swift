#if canImport(Glibc)
import Glibc
#endif
import HostOS

extension CgroupSlot {
    /// Above this, memory an empty entry still has charged is a previous holder's, not noise.
    static let leftoverChargeLimit: Int64 = 8 << 20

    /// cgroup v2 keeps pages charged to the cgroup that first touched them, after its processes
    /// are gone: page cache, and tmpfs pages (as when a state root on tmpfs backs a sandbox's
    /// writable layer) that nothing can reclaim without swap. True when this empty entry holds
    /// more than `leftoverChargeLimit` even after asking the kernel to reclaim it: a new holder
    /// would find that much of its memory limit taken.
    func holdsLeftoverMemory(in parents: CgroupParents) -> Bool {
        guard parents.hierarchies.count == 1, parents.hierarchies[0].version == .v2,
            let charged = memoryCurrent(), charged > Self.leftoverChargeLimit
        else { return false }
        // Fails (EAGAIN) when not all of it can go; what is left is read back below.
        try? file(0, "memory.reclaim", O_WRONLY).writeValue(String(charged))
        return (memoryCurrent() ?? 0) > Self.leftoverChargeLimit
    }

    private func memoryCurrent() -> Int64? {
        (try? file(0, "memory.current", O_RDONLY).readValue()).flatMap { Int64($0.trimmingWhitespace()) }
    }
}
