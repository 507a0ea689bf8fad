import Testing
@testable import Cgroups
import HostOS

@Suite("cgroup host detection and names")
struct CgroupParsingTests {
    static let hybrid = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
        37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """
    static let v1Combined = """
        25 21 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
        26 21 0:23 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory
        27 21 0:23 / /mnt/memory\\040copy rw,nosuid shared:10 - cgroup cgroup rw,memory
        """
    static let v2 = """
        29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
        """

    func detect(_ text: String) -> CgroupHost? {
        CgroupHost.detect(
            mounts: MountInfo.parse(text), controllersOfUnified: { _ in ["cpu", "memory", "pids"] },
            isWritable: { $0 != "/sys/fs/cgroup/freezer" })
    }

    @Test func hybridUsesTheV1Hierarchies() throws {
        let host = try #require(detect(Self.hybrid))
        #expect(host.mode == .hybrid)
        #expect(
            host.hierarchies.map(\.mountPoint) == [
                "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/freezer",
            ])
        #expect(host.controllers == ["cpu", "cpuacct", "memory", "freezer"])
        #expect(host.unifiedMountPoint == "/sys/fs/cgroup/unified")
        #expect(!host.writable)
        #expect(host.summary.contains("missing controllers: cpuset,blkio,pids"))
    }

    @Test func v1CombinedMountsAndDuplicatesCountOnce() throws {
        let host = try #require(detect(Self.v1Combined))
        #expect(host.mode == .v1)
        #expect(host.hierarchies.map(\.controllers) == [["cpu", "cpuacct"], ["memory"]])
        #expect(host.hierarchies[0].procKey == "cpu,cpuacct")
        #expect(MountInfo.parse(Self.v1Combined)[2].mountPoint == "/mnt/memory copy")
    }

    @Test func unifiedOnlyIsV2() throws {
        let host = try #require(detect(Self.v2))
        #expect(host.mode == .v2)
        #expect(host.hierarchies == [CgroupHierarchy(version: .v2, mountPoint: "/sys/fs/cgroup", controllers: ["cpu", "memory", "pids"])])
        #expect(host.writable)
        #expect(detect("1 2 0:1 / / rw - ext4 /dev/sda rw") == nil)
    }

    @Test func sandboxIDsAreValidated() throws {
        #expect(try SandboxID.validate("abc-DEF_1.2") == "abc-DEF_1.2")
        for bad in ["", "..", ".", "a/b", "a b", "ä", String(repeating: "x", count: 65), "x\n"] {
            #expect(throws: CgroupError.self) { try SandboxID.validate(bad) }
        }
        let error = try #require(throws: CgroupError.self) { try SandboxID.validate("../etc") }
        #expect(!error.message.contains("\n"))
    }

    @Test func entryNamesRoundTrip() throws {
        let owner = ProcessIdentity(pid: 4242, startTime: 987_654)
        let taken = CgroupEntryName.taken(token: "00ab12cd34ef", owner: owner, sandboxID: "my-sandbox.1")
        #expect(taken.text == "sb-00ab12cd34ef-4242-987654-my-sandbox.1")
        #expect(CgroupEntryName(parsing: taken.text) == taken)
        #expect(CgroupEntryName(parsing: "pool-00ab12cd34ef") == .free(token: "00ab12cd34ef"))
        for other in [
            "pool-xyz", "pool-00AB12CD34EF", "sb-00ab12cd34ef-1-2", "sb-00ab12cd34ef-x-2-id", "cgroup.procs", "sb-00ab12cd34ef-1-2-a/b",
        ] {
            #expect(CgroupEntryName(parsing: other) == nil)
        }
        #expect(CgroupEntryName.isToken(CgroupEntryName.newToken()))
    }

    @Test func limitsAreValidated() throws {
        try CgroupLimits(memoryBytes: 64 << 20, cpuQuotaMicros: 50_000, cpuShares: 512, cpus: "0-1,3", maxProcesses: 100).validate()
        let bad = [
            CgroupLimits(memoryBytes: 4096), CgroupLimits(cpuPeriodMicros: 10), CgroupLimits(cpuQuotaMicros: 5),
            CgroupLimits(cpuShares: 1), CgroupLimits(cpus: "0-"), CgroupLimits(cpus: "a"), CgroupLimits(maxProcesses: 0),
        ]
        for limits in bad { #expect(throws: CgroupError.self) { try limits.validate() } }
        #expect(CgroupLimits.weight(forShares: 1024) == 39)
        #expect(CgroupLimits.weight(forShares: 262_144) == 10_000)
    }

    @Test func processStatParsingSurvivesOddNames() {
        let stat = "123 (a ) b) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 5555 1000 10"
        #expect(ProcessIdentity.parse(stat: stat, pid: 123) == ProcessIdentity(pid: 123, startTime: 5555))
        #expect(ProcessIdentity.parse(stat: stat.replacingFirstState("Z"), pid: 123) == nil)
        #expect(ProcessIdentity.current().isAlive)
        #expect(!ProcessIdentity(pid: ProcessIdentity.current().pid, startTime: 1).isAlive)
    }
}

private extension String {
    func replacingFirstState(_ state: String) -> String {
        guard let close = lastIndex(of: ")") else { return self }
        let after = index(close, offsetBy: 2)
        return String(self[..<after]) + state + String(self[index(after: after)...])
    }
}
