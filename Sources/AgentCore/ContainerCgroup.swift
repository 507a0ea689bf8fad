#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS
import TTRPC

/// A container's own cgroup in the guest (a pod's containers: one VM, several containers, each
/// with its own memory limit, usage and OOM kills). cgroup2 is mounted on first use, so a
/// sandbox of one container never pays for it.
struct ContainerCgroup: Sendable {
    static let hierarchy = "/sys/fs/cgroup"
    let directory: String

    /// Makes `<hierarchy>/<containerID>` with the memory and pids controllers (cpu where the
    /// kernel has it) and `memoryLimitBytes` as memory.max (0: none).
    static func make(containerID: String, memoryLimitBytes: UInt64) throws -> ContainerCgroup {
        try mountHierarchy()
        let cgroup = ContainerCgroup(directory: hierarchy + "/" + containerID)
        guard mkdir(cgroup.directory, 0o755) == 0 || errno == EEXIST else {
            throw TTRPCStatus(
                .internal, "cannot make the cgroup of container \(containerID): \(SystemError.last("mkdir", subject: cgroup.directory))")
        }
        if memoryLimitBytes > 0 {
            do {
                try cgroup.setMemoryLimit(bytes: memoryLimitBytes)
            } catch {
                cgroup.remove()
                throw error
            }
        }
        return cgroup
    }

    /// memory.max (0: no limit but the VM's size).
    func setMemoryLimit(bytes: UInt64) throws {
        do {
            try write("memory.max", bytes == 0 ? "max" : "\(bytes)")
        } catch {
            throw TTRPCStatus(.invalidArgument, "cannot set the memory limit of \(directory) to \(bytes) bytes: \(error)")
        }
    }

    /// cgroup2 on /sys/fs/cgroup, with the controllers containers use enabled for its children.
    private static func mountHierarchy() throws {
        if access(hierarchy + "/cgroup.controllers", F_OK) != 0 {
            do {
                try Mount.mount(source: "cgroup2", target: hierarchy, type: "cgroup2", flags: GuestMounts.nosuidNodevNoexec)
            } catch let error as SystemError where error.errno == EBUSY {
                // Mounted by a concurrent CreateContainer.
            } catch {
                throw TTRPCStatus(.failedPrecondition, "cannot mount cgroup2 on \(hierarchy): \(error)")
            }
        }
        let root = ContainerCgroup(directory: hierarchy)
        for controller in ["memory", "pids"] {
            do {
                try root.write("cgroup.subtree_control", "+" + controller)
            } catch {
                throw TTRPCStatus(.failedPrecondition, "the guest kernel has no \(controller) cgroup controller: \(error)")
            }
        }
        try? root.write("cgroup.subtree_control", "+cpu")
    }

    /// cgroup.procs, for a process to move itself in (`rund_spawn_place.cgroup_procs_fd`).
    func openProcesses() throws -> FileDescriptor {
        try FileDescriptor.open(directory + "/cgroup.procs", O_WRONLY | O_CLOEXEC)
    }

    /// Times the OOM killer ended a process of this cgroup.
    func oomKills() -> UInt64 {
        GuestStats.readText(directory + "/memory.events").flatMap { GuestStats.fields($0, separator: " ")["oom_kill"] } ?? 0
    }

    /// Usage of the cgroup alone: memory, CPU time and processes.
    func stats() -> AgentStatsResponse {
        var response = AgentStatsResponse()
        func number(_ file: String) -> UInt64? {
            GuestStats.readText(directory + "/" + file).flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { UInt64($0) } }
        }
        let memory = GuestStats.readText(directory + "/memory.stat").map { GuestStats.fields($0, separator: " ") } ?? [:]
        response.memory = .with {
            $0.usageBytes = number("memory.current") ?? 0
            $0.maxUsageBytes = number("memory.peak") ?? 0
            $0.limitBytes = number("memory.max") ?? 0  // "max": unlimited, 0.
            $0.rssBytes = memory["anon"] ?? 0
            $0.cacheBytes = memory["file"] ?? 0
            $0.oomKills = oomKills()
        }
        let cpu = GuestStats.readText(directory + "/cpu.stat").map { GuestStats.fields($0, separator: " ") } ?? [:]
        response.cpu = .with {
            $0.usageNanos = (cpu["usage_usec"] ?? 0).multipliedReportingOverflow(by: 1000).partialValue
            $0.userNanos = (cpu["user_usec"] ?? 0).multipliedReportingOverflow(by: 1000).partialValue
            $0.systemNanos = (cpu["system_usec"] ?? 0).multipliedReportingOverflow(by: 1000).partialValue
        }
        response.pids = .with {
            $0.current = number("pids.current") ?? 0
            $0.limit = number("pids.max") ?? 0
        }
        return response
    }

    /// Removes the cgroup once its processes are gone (they may take a moment to exit).
    func remove() {
        for _ in 0..<200 {
            if rmdir(directory) == 0 || errno == ENOENT { return }
            usleep(10_000)
        }
    }

    private func write(_ file: String, _ value: String) throws {
        let descriptor = try FileDescriptor.open(directory + "/" + file, O_WRONLY | O_CLOEXEC)
        try descriptor.writeAll(value)
    }
}
