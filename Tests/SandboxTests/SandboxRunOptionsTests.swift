import AgentProtocol
import Cgroups
import HostOS
@testable import Sandbox
import Storage
import Testing

/// What `rund run` options turn into before any VM starts: the root, the agent's ProcessSpec,
/// the exit status, where the cgroup goes.
struct SandboxRunOptionsTests {
    @Test func exactlyOneRootIsAccepted() throws {
        #expect(try SandboxRoot.choose(image: "busybox", rootfs: nil) == .image("busybox"))
        #expect(try SandboxRoot.choose(image: nil, rootfs: "/srv/tree") == .directory("/srv/tree"))
        #expect { try SandboxRoot.choose(image: "busybox", rootfs: "/srv/tree") } throws: { "\($0)".contains("not both") }
        #expect { try SandboxRoot.choose(image: nil, rootfs: nil) } throws: { "\($0)".contains("--image REF") }
    }

    @Test func aDirectoryRootNeedsTheCommand() throws {
        let spec = SandboxSpec(id: "s", root: .directory("/srv/tree"))
        #expect { try spec.processSpec(config: .init()) } throws: { "\($0)".contains("--rootfs") }
        let given = SandboxSpec(id: "s", root: .directory("/srv/tree"), command: ["/bin/sh", "-c", "true"])
        let process = try given.processSpec(config: .init())
        #expect(process.args == ["/bin/sh", "-c", "true"])
        #expect(process.cwd == "/" && process.user.uid == 0)
    }

    @Test func stdioFollowsInteractiveAndTerminal() throws {
        let config = OCI.ImageConfiguration.Config(environment: ["PATH=/bin"], command: ["sh"])
        let plain = try SandboxSpec(id: "s", image: "i").processSpec(config: config)
        #expect(!plain.openStdin && !plain.hasTerminal)
        #expect(plain.env == ["PATH=/bin"])

        let terminal = try SandboxSpec(id: "s", root: .image("i"), interactive: true,
                                       terminal: WindowSize(rows: 50, columns: 132)).processSpec(config: config)
        #expect(terminal.openStdin)
        #expect(terminal.terminal.size.rows == 50 && terminal.terminal.size.columns == 132)
        #expect(terminal.env == ["PATH=/bin", "TERM=xterm"])

        let ownTerm = try SandboxSpec(id: "s", root: .image("i"), environment: ["TERM=vt100"], terminal: .fallback).processSpec(config: config)
        #expect(ownTerm.env == ["PATH=/bin", "TERM=vt100"])
        #expect(ownTerm.terminal.size.rows == 24 && ownTerm.terminal.size.columns == 80)
    }

    @Test func outOfMemoryBecomes137WithOneLine() {
        let killed = SandboxExit(processStatus: 137, oomKilled: true)
        #expect(killed.status == 137)
        let line = killed.outOfMemoryMessage(memoryMiB: 128)
        #expect(line?.hasPrefix("the process was killed: the sandbox ran out of memory (--memory 128 MiB)") == true)
        #expect(line?.contains("\n") == false)

        let childKilled = SandboxExit(processStatus: 1, oomKilled: true)
        #expect(childKilled.status == 137)
        #expect(childKilled.outOfMemoryMessage(memoryMiB: 64)?.contains("out of memory") == true)

        // A process that coped with a killed helper succeeded: its status stands, nothing to say.
        let coped = SandboxExit(processStatus: 0, oomKilled: true)
        #expect(coped.status == 0 && coped.outOfMemoryMessage(memoryMiB: 64) == nil)
        let plain = SandboxExit(processStatus: 3, oomKilled: false)
        #expect(plain.status == 3 && plain.outOfMemoryMessage(memoryMiB: 64) == nil)
    }

    @Test func waitResponsesBecomeStatuses() {
        #expect(SandboxExit(AgentWaitProcessResponse.with { $0.exitCode = 3 }) == SandboxExit(processStatus: 3, oomKilled: false))
        #expect(SandboxExit(AgentWaitProcessResponse.with { $0.signal = 9; $0.oomKilled = true }).status == 137)
        #expect(SandboxExit(AgentWaitProcessResponse.with { $0.signal = 15 }).status == 143)
    }

    @Test func theCgroupTakesThreadsOnV1AndTheProcessOnV2() {
        let v1 = CgroupHost(mode: .v1, hierarchies: [
            CgroupHierarchy(version: .v1, mountPoint: "/sys/fs/cgroup/memory", controllers: ["memory"]),
        ], writable: true)
        let hybrid = CgroupHost(mode: .hybrid, hierarchies: v1.hierarchies, writable: true, unifiedMountPoint: "/sys/fs/cgroup/unified")
        let v2 = CgroupHost(mode: .v2, hierarchies: [
            CgroupHierarchy(version: .v2, mountPoint: "/sys/fs/cgroup", controllers: ["cpu", "memory", "pids"]),
        ], writable: true)
        #expect(SandboxCgroup.placement(host: v1, soleSandboxInProcess: true) == .thread)
        #expect(SandboxCgroup.placement(host: hybrid, soleSandboxInProcess: false) == .thread)
        #expect(SandboxCgroup.placement(host: v2, soleSandboxInProcess: true) == .process)
        #expect(SandboxCgroup.placement(host: v2, soleSandboxInProcess: false) == SandboxCgroup.Placement.none)
        #expect(SandboxCgroup.limits(memoryMiB: 128, writableSizeMiB: 64).memoryBytes == Int64(128 + 64 + SandboxCgroup.overheadMiB) << 20)
    }

    @Test func aGuestThatEndedIsNamedInTheError() {
        #expect("\(SandboxError(guestEnded: .guestPanicked("Kernel panic - not syncing: sysrq triggered crash")))"
            == "the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash")
        #expect("\(SandboxError(guestEnded: .poweredOff))" == "the guest powered off before the process ended")
        #expect("\(SandboxError(guestEnded: .crashed("triple fault")))" == "the guest crashed: triple fault")
    }
}
