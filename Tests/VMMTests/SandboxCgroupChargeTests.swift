#if canImport(Glibc)
import Glibc
#endif
import Cgroups
import Foundation
import HostOS
import Logging
import Testing
@testable import Sandbox
@testable import VMM

/// The sandbox's cgroup really holds its guest's memory: a process that joins it (as `rund run`
/// does) runs a freestanding guest that touches 96 MiB on this host's KVM, and the cgroup's own
/// usage counter rises by that much (cgroup v1 here, v2 in the rig's L1, where RunInRigTests'
/// `confinement` check does the same through `rund run`). The CPU and task limits are in place.
/// The process that joins the cgroup is a child (this bundle, filtered to the child suite): the
/// whole process moves, so it must hold nothing else.
@Suite(
    .enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"),
    .enabled(if: CgroupChargeChild.cgroupsWritable, "needs root and a writable cgroupfs"))
struct SandboxCgroupChargeTests {
    @Test func guestMemoryIsChargedToTheSandboxCgroup() throws {
        let binary = try FreestandingGuest.build("vmm_guest.c", defines: ["SCENARIO": "4", "TOUCH_MIB": "96"])
        let environment =
            ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
            + ["\(CgroupChargeChild.guestVariable)=\(binary)"]
        let child = try Subprocess.run(
            [
                CommandLine.arguments[0], "--testing-library", "swift-testing",
                "--filter", "CgroupChargeInChildProcess",
            ], environment: environment)
        #expect(child.status == 0, "child test failed: \(child.stdoutText.suffix(2000)) \(child.stderrText.suffix(2000))")
        let line = try #require(
            child.stdoutText.split(separator: "\n").first { $0.hasPrefix("cgroup-charge-child:") },
            "no result line from the child: \(child.stdoutText.suffix(2000))")
        print(line)
        let fields = Dictionary(
            line.dropFirst("cgroup-charge-child:".count).split(separator: " ").compactMap { field in
                field.firstIndex(of: "=").map { (String(field[..<$0]), String(field[field.index(after: $0)...])) }
            }, uniquingKeysWith: { $1 })
        let before = Int64(fields["before"] ?? "") ?? -1, during = Int64(fields["during"] ?? "") ?? -1
        #expect(before >= 0 && during - before >= 96 << 20, "\(line)")
        #expect(fields["limit"] == String((160 + 64 + SandboxCgroup.overheadMiB) << 20), "\(line)")
        #expect(fields["cpu"] == "125000/100000", "\(line)")
        #expect(fields["tasks"] == String(SandboxCgroup.maxTasks), "\(line)")
        #expect(fields["exit"] == "stopped-by-signal-15", "\(line)")
    }
}

/// The child side: joins a sandbox cgroup, runs the guest named by the environment until it has
/// touched its memory, reads the cgroup's counters, prints one line.
@Suite(.enabled(if: CgroupChargeChild.guest != nil, "run by SandboxCgroupChargeTests in a child process"))
struct CgroupChargeInChildProcess {
    @Test func touchMemoryAndReadTheCgroup() throws {
        let binary = try #require(CgroupChargeChild.guest)
        let logger = Logger(label: "test")
        let cgroup = try SandboxCgroup(
            sandboxID: "charge-\(getpid())", memoryMiB: 160, vcpuCount: 1, writableSizeMiB: 64,
            soleSandboxInProcess: true, allowUnconfined: false, logger: logger)
        defer { cgroup.release(logger: logger) }
        try cgroup.attachProcess()
        let usage = try #require(CgroupChargeChild.file(in: cgroup.paths, ["memory.usage_in_bytes", "memory.current"]))
        let before = try CgroupChargeChild.read(usage)

        let directory = try TemporaryDirectory()
        let console = directory.path + "/console"
        let machine = try Machine(
            configuration: VMConfiguration(
                kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000),
                memoryMiB: 160, console: .file(console)))
        let exit = LockedBox<MachineExit?>(nil)
        let runner = try OSThread.spawn(name: "charge-vm") { exit.value = try? machine.run() }
        for _ in 0..<600 where ((try? String(contentsOfFile: console, encoding: .utf8)) ?? "") != "touched\n" {
            usleep(100_000)
        }
        let during = try CgroupChargeChild.read(usage)
        let limit =
            try CgroupChargeChild.file(in: cgroup.paths, ["memory.limit_in_bytes", "memory.max"]).map(CgroupChargeChild.read) ?? "?"
        let quota = try CgroupChargeChild.file(in: cgroup.paths, ["cpu.cfs_quota_us"]).map(CgroupChargeChild.read)
        let period = try CgroupChargeChild.file(in: cgroup.paths, ["cpu.cfs_period_us"]).map(CgroupChargeChild.read)
        let cpu =
            try quota.map { "\($0)/\(period ?? "?")" }
            ?? CgroupChargeChild.file(in: cgroup.paths, ["cpu.max"]).map { try CgroupChargeChild.read($0).replacing(" ", with: "/") } ?? "?"
        let tasks = try CgroupChargeChild.file(in: cgroup.paths, ["pids.max"]).map(CgroupChargeChild.read) ?? "?"
        machine.stop(signal: 15)
        runner.join()
        let ended = exit.value.map { $0 == .stoppedBySignal(15) ? "stopped-by-signal-15" : "\($0)".replacing(" ", with: "-") } ?? "none"
        print("cgroup-charge-child: before=\(before) during=\(during) limit=\(limit) cpu=\(cpu) tasks=\(tasks) exit=\(ended)")
    }
}

enum CgroupChargeChild {
    static let guestVariable = "RUND_TEST_CGROUP_CHARGE_GUEST"
    static let guest: String? = ProcessInfo.processInfo.environment[guestVariable]
    static let cgroupsWritable: Bool = getuid() == 0 && ((try? CgroupHost.detect())?.writable ?? false)

    /// The first of `names` that exists in one of the cgroup's directories.
    static func file(in directories: [String], _ names: [String]) -> String? {
        for name in names {
            if let directory = directories.first(where: { access($0 + "/" + name, R_OK) == 0 }) { return directory + "/" + name }
        }
        return nil
    }

    static func read(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
