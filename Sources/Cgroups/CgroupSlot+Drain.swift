#if canImport(Glibc)
import Glibc
#endif
import HostOS

extension CgroupSlot {
    /// Makes sure no process is left in the entry: the calling process steps out (home), every
    /// other one is killed (v2 `cgroup.kill`; v1: frozen first so none can fork away, then
    /// SIGKILL, then thawed so the kills land), and we wait until `cgroup.procs` is empty.
    /// Returns how many processes were killed. Throws if some survive `timeout`.
    @discardableResult
    func drain(in parents: CgroupParents, timeoutNanoseconds: UInt64 = 5_000_000_000) throws -> Int {
        var pids = try processes()
        if pids.isEmpty { return 0 }
        let me = getpid()
        if pids.remove(me) != nil { try parents.moveHome(me) }
        if pids.isEmpty { return 0 }
        let killed = pids.count
        if parents.hasKillFile {
            try file(0, "cgroup.kill", O_WRONLY).writeValue("1")
        } else if let freezer = parents.freezerIndex {
            try freeze(freezer, true)
            defer { try? freeze(freezer, false) }
            for pid in try processes() where pid != me { _ = kill(pid, SIGKILL) }
        } else {
            for pid in pids { _ = kill(pid, SIGKILL) }
        }
        try waitUntilEmpty(timeoutNanoseconds: timeoutNanoseconds, except: me)
        return killed
    }

    /// Polls `cgroup.procs` with a growing pause, killing any process that still shows up
    /// (one forked between listing and killing, or one that joined late).
    private func waitUntilEmpty(timeoutNanoseconds: UInt64, except me: pid_t) throws {
        let deadline = MonotonicNanoseconds.now() + timeoutNanoseconds
        var pause: UInt32 = 20
        while true {
            let left = try processes().subtracting([me])
            if left.isEmpty { return }
            if MonotonicNanoseconds.now() > deadline {
                let named = left.sorted().map { pid in
                    let comm =
                        (try? FileDescriptor.open("/proc/\(pid)/comm", O_RDONLY).readToEnd(limit: 64))
                        .map { String(decoding: $0, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "" } ?? ""
                    return comm.isEmpty ? "\(pid)" : "\(pid) (\(comm))"
                }
                throw CgroupError(
                    "processes \(named.joined(separator: ", ")) survived SIGKILL in cgroup \(name.text): check for processes stuck in the kernel (state D)"
                )
            }
            for pid in left { _ = kill(pid, SIGKILL) }
            usleep(pause)
            pause = min(pause * 2, 10_000)
        }
    }

    /// v1 freezer: FROZEN stops every task; wait (briefly) for FREEZING to become FROZEN.
    private func freeze(_ hierarchy: Int, _ frozen: Bool) throws {
        try file(hierarchy, "freezer.state", O_WRONLY).writeValue(frozen ? "FROZEN" : "THAWED")
        guard frozen else { return }
        let state = try file(hierarchy, "freezer.state", O_RDONLY)
        for _ in 0..<200 {
            if try state.readValue().hasPrefix("FROZEN") { return }
            usleep(100)
        }
    }
}
