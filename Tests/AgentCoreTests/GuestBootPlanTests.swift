#if canImport(Glibc)
import Glibc
#endif
import HostOS
@testable import AgentCore
import Testing

struct GuestBootPlanTests {
    @Test func parsesTheOrderMakeGuestInitramfsWrites() throws {
        let text = """
            kernel/drivers/virtio/virtio.ko
            kernel/drivers/virtio/virtio_ring.ko

            # comment
              kernel/net/vmw_vsock/vsock.ko\t
            kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko
            """
        #expect(
            try ModuleLoader.parseOrder(text) == [
                "kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/net/vmw_vsock/vsock.ko", "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko",
            ])
        #expect(try ModuleLoader.parseOrder("") == [])
    }

    @Test func rejectsModulePathsOutsideLibModules() {
        #expect(throws: ModuleOrderError(line: 2, text: "/etc/passwd")) {
            try ModuleLoader.parseOrder("a.ko\n/etc/passwd\n")
        }
        #expect(throws: ModuleOrderError(line: 1, text: "kernel/../../x.ko")) {
            try ModuleLoader.parseOrder("kernel/../../x.ko")
        }
    }

    @Test func mountsProcFirstAndTheRestOfTheBaseSystem() {
        let mounts = GuestMounts.essential
        #expect(mounts.first?.target == "/proc")
        #expect(mounts.map(\.type) == ["proc", "sysfs", "devtmpfs", "devpts", "tmpfs"])
        #expect(mounts.map(\.target) == ["/proc", "/sys", "/dev", "/dev/pts", "/run"])
    }

    @Test func decodesWaitStatuses() {
        #expect(ExitStatus(waitStatus: 3 << 8) == ExitStatus(code: 3, signal: 0))
        #expect(ExitStatus(waitStatus: 0) == ExitStatus(code: 0, signal: 0))
        #expect(ExitStatus(waitStatus: 9) == ExitStatus(code: 0, signal: 9))
        #expect(ExitStatus(waitStatus: 15 | 0x80) == ExitStatus(code: 0, signal: 15))
    }

    @Test func parsesProcStatistics() {
        let cpu = GuestStats.cpu(fromStat: "cpu  100 5 20 9000 3 2 1 0 0 0\ncpu0 1 2 3\n")
        #expect(cpu.userNanos == 105 * 10_000_000)
        #expect(cpu.systemNanos == 23 * 10_000_000)
        #expect(cpu.usageNanos == 128 * 10_000_000)
        let memory = GuestStats.memory(
            fromMeminfo: """
                MemTotal:         262144 kB
                MemFree:          100000 kB
                MemAvailable:     200000 kB
                Cached:            30000 kB
                AnonPages:         40000 kB
                """)
        #expect(memory.limitBytes == 262144 * 1024)
        #expect(memory.usageBytes == 62144 * 1024)
        #expect(memory.cacheBytes == 30000 * 1024)
        #expect(memory.rssBytes == 40000 * 1024)
    }

    /// WaitProcess's oom_killed compares this count at the process's start and exit.
    @Test func countsOOMKillsFromVmstat() throws {
        let directory = "/tmp/rund-vmstat-\(getpid())"
        try FileSystem.makeDirectories(directory)
        defer { try? FileSystem.removeTree(directory) }
        #expect(GuestStats.oomKills(procRoot: directory) == 0)
        try FileSystem.open(at: nil, directory + "/vmstat", O_WRONLY | O_CREAT, mode: 0o644)
            .writeAll("nr_free_pages 1000\noom_kill 3\nnr_zone_active_anon 7\n")
        #expect(GuestStats.oomKills(procRoot: directory) == 3)
        #expect(GuestStats.collect(procRoot: directory).memory.oomKills == 3)
    }
}
