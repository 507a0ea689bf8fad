import AgentProtocol
import Cgroups
import HostOS
@testable import Sandbox
import Storage
import Logging
import Testing

/// What `rund run` options turn into before any VM starts: the root, the agent's ProcessSpec,
/// the exit status, where the cgroup goes.
struct SandboxRunOptionsTests {
    @Test func aDirectoryRootNeedsTheCommand() throws {
        let spec = SandboxSpec(id: "s", root: .directory("/srv/tree"))
        #expect { try spec.processSpec(config: .init()) } throws: { ($0 as? SandboxError)?.kind == .noCommand }
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

        let terminal = try SandboxSpec(
            id: "s", root: .image("i"), interactive: true,
            terminal: WindowSize(rows: 50, columns: 132)
        ).processSpec(config: config)
        #expect(terminal.openStdin)
        #expect(terminal.terminal.size.rows == 50 && terminal.terminal.size.columns == 132)
        #expect(terminal.env == ["PATH=/bin", "TERM=xterm"])

        let ownTerm = try SandboxSpec(id: "s", root: .image("i"), environment: ["TERM=vt100"], terminal: .fallback).processSpec(
            config: config)
        #expect(ownTerm.env == ["PATH=/bin", "TERM=vt100"])
        #expect(ownTerm.terminal.size.rows == 24 && ownTerm.terminal.size.columns == 80)
    }

    @Test func outOfMemoryBecomes137WithOneLine() {
        let killed = SandboxExit(processStatus: 137, oomKilled: true)
        #expect(killed.status == 137)
        let line = killed.outOfMemoryMessage(memoryMiB: 128)
        #expect(line?.hasPrefix("the process was killed: the sandbox ran out of memory (128 MiB)") == true)
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
        #expect(
            SandboxExit(
                AgentWaitProcessResponse.with {
                    $0.signal = 9; $0.oomKilled = true
                }
            ).status == 137)
        #expect(SandboxExit(AgentWaitProcessResponse.with { $0.signal = 15 }).status == 143)
    }

    @Test func theCgroupLimitsMemoryCPUAndTasksFromTheSandboxSize() {
        let limits = SandboxCgroup.limits(memoryMiB: 128, vcpuCount: 2, writableSizeMiB: 64)
        #expect(limits.memoryBytes == Int64(128 + 64 + SandboxCgroup.overheadMiB) << 20)
        #expect(limits.cpuQuotaMicros == 225_000)  // two CPUs and a quarter, per 100 ms
        #expect(limits.cpuPeriodMicros == 100_000)
        #expect(limits.maxProcesses == SandboxCgroup.maxTasks)
        #expect((try? limits.validate()) != nil)

        // Sizes from a CLI option or a config.json never trap: the limits saturate.
        let huge = SandboxCgroup.limits(memoryMiB: .max, vcpuCount: .max, writableSizeMiB: .max)
        #expect(huge.memoryBytes == .max && huge.cpuQuotaMicros == .max)
    }

    @Test func aSandboxThatCannotBeConfinedDoesNotStartUnlessAllowed() throws {
        // A process serving several sandboxes cannot put each in its own cgroup.
        do {
            _ = try SandboxCgroup(
                sandboxID: "shared", memoryMiB: 64, vcpuCount: 1, writableSizeMiB: 64, soleSandboxInProcess: false,
                allowUnconfined: false, logger: Logger(label: "test"))
            Issue.record("an unconfinable sandbox was given a cgroup")
        } catch let error as SandboxError {
            #expect(error.kind == .cannotConfine)
            #expect(
                error.description
                    == "the sandbox cannot be confined: this process serves other sandboxes, and a cgroup confines whole processes")
        }
        let unconfined = try SandboxCgroup(
            sandboxID: "shared", memoryMiB: 64, vcpuCount: 1, writableSizeMiB: 64,
            soleSandboxInProcess: false, allowUnconfined: true, logger: Logger(label: "test"))
        #expect(unconfined.paths.isEmpty)
        unconfined.release(logger: Logger(label: "test"))
    }

    @Test func aGuestThatEndedIsNamedInTheError() {
        #expect(
            "\(SandboxError(guestEnded: .guestPanicked("Kernel panic - not syncing: sysrq triggered crash")))"
                == "the guest kernel panicked: Kernel panic - not syncing: sysrq triggered crash")
        #expect("\(SandboxError(guestEnded: .poweredOff))" == "the guest powered off before the process ended")
        #expect("\(SandboxError(guestEnded: .crashed("triple fault")))" == "the guest crashed: triple fault")
    }
}
