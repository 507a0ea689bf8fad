import Foundation
import HostOS
import Testing

private let canBuildBusyboxImage = access("/bin/busybox", R_OK) == 0 && access("/usr/bin/mkfs.erofs", X_OK) == 0

/// `rund run` end to end, inside the rig's L1 (real KVM): an image imported on this host runs as
/// containers in microVMs. Every check runs in one L1 boot (Guests/run-checks-in-l1.sh through
/// `scripts/rig-run --script`), which prints one result line per check; each test here asserts one.
@Suite(
    .serialized,
    .enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason),
    .enabled(if: canBuildBusyboxImage, "needs /bin/busybox (busybox-static) and mkfs.erofs (erofs-utils)"),
    .enabled(if: canBuildStaticC, "needs gcc and a static libc (libc6-dev) for the hostile agent"))
struct RunInRigTests {
    @Test func outputAndExitStatusComeBack() throws { try RunChecks.expectPassed("exit-status") }
    @Test func environmentWorkdirAndUserReachTheProcess() throws { try RunChecks.expectPassed("env-workdir-user") }
    @Test func rundsOwnKernelIsTheDefaultAndTheStockKernelStillBoots() throws { try RunChecks.expectPassed("guest-kernels") }
    @Test func concurrentSandboxesSeeOnlyTheirOwnWritesAndTheImageStaysUnchanged() throws { try RunChecks.expectPassed("isolation") }
    @Test func stdinIsPipedToTheProcess() throws { try RunChecks.expectPassed("stdin") }
    @Test func tenMegabytesOfOutputArriveIntact() throws { try RunChecks.expectPassed("large-output") }
    @Test func sigtermToRundReachesTheProcess() throws { try RunChecks.expectPassed("sigterm") }
    @Test func memoryExhaustionEndsWith137AndSaysSo() throws { try RunChecks.expectPassed("oom") }
    @Test func guestPanicEndsWith125Promptly() throws { try RunChecks.expectPassed("guest-panic") }
    @Test(arguments: HostileAgent.modes)
    func hostileAgentEndsRundWith125AndOneLine(mode: String) throws { try RunChecks.expectPassed("hostile-\(mode)") }
    @Test func nextSandboxRunsAfterTheHostileOnes() throws { try RunChecks.expectPassed("after-hostile") }
    @Test func aProcessThatIgnoresSIGTERMIsStoppedAfterTheGracePeriod() throws { try RunChecks.expectPassed("stop-grace") }
    @Test func aSecondSignalStopsTheSandboxAtOnce() throws { try RunChecks.expectPassed("stop-second-signal") }
    @Test func anAgentThatNeverAnswersIsStoppedAfterTheGracePeriod() throws { try RunChecks.expectPassed("stop-mute-agent") }
    @Test func aGuestThatStopsDuringACallIsNamedStalledNotMute() throws { try RunChecks.expectPassed("stall-during-call") }
    @Test func vmmThreadsAreFilteredAndTheCgroupHoldsTheGuestsMemory() throws { try RunChecks.expectPassed("confinement") }
    @Test func aForbiddenSystemCallEndsTheSandboxClearly() throws { try RunChecks.expectPassed("seccomp-violation") }
    @Test func aGuestThatMakesNoProgressEndsTheRunWithItsVCPUState() throws { try RunChecks.expectPassed("stall-watchdog") }
    @Test(arguments: HostileAgent.lyingModes)
    func lyingAgentAnswersEndRundCleanlyInOneLine(mode: String) throws { try RunChecks.expectPassed("hostile-answer-\(mode)") }
    @Test func manySandboxesInOneProcessLeakNoDescriptorsOrThreads() throws { try RunChecks.expectPassed("fd-threads") }
    @Test func nothingIsLeftBehind() throws { try RunChecks.expectPassed("no-leaks") }
}

/// The L1 boot every RunInRigTests test reads its result from.
enum RunChecks {
    static let report: Result<RigChecks.Report, any Error> = Result { try runAll() }

    static func expectPassed(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try report.get().expectPassed(name, ranBy: "rig-run", sourceLocation: sourceLocation)
    }

    static func runAll() throws -> RigChecks.Report {
        let work = try TestDirectory()
        let binaries = URL(fileURLWithPath: RigHarness.testBundle).deletingLastPathComponent().path
        let scripts = RigHarness.repositoryRoot + "/scripts"
        let image = try Subprocess.checked([scripts + "/make-test-image", "--root", work.path + "/store", "--rund", binaries + "/rund"])
            .stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let hostile = work.path + "/hostile"
        try HostileAgent.buildAll(into: hostile)
        let guests = RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests"
        // The test bundle itself comes along: its SandboxInsideL1Tests run in L1.
        let bundle = RigHarness.testBundle
        // The L1 script prints at least once a minute: five silent minutes mean a wedged L1.
        return try RigChecks.boot(
            "run-checks",
            [
                scripts + "/rig-run", "--bin", binaries, "--images-root", work.path + "/store",
                "--timeout", "1800", "--idle-timeout", "300",
                "--put", hostile + ":/opt/hostile", "--put", bundle,
                "--script", guests + "/run-checks-in-l1.sh", image, "/opt/hostile", bundle,
            ])
    }
}

/// Guests/hostile-agent.c, built static once per mode, named hostile-agent-<mode>.
enum HostileAgent {
    /// Malformed frames, then silence.
    static let modes = ["bad-header", "oversized", "garbage-proto", "unknown-stream"]
    /// Well-formed answers with impossible numbers or hostile error messages.
    static let lyingModes = [
        "exit-huge", "exit-256", "signal-negative", "signal-huge", "signal-max", "huge-pid",
        "escape-message", "huge-message", "deadline-message",
    ]
    /// Plays along until the process runs, then never answers again; or spins on CreateContainer.
    static let wedgedModes = ["mute-after-start", "spin-on-create"]

    static func buildAll(into directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let source = RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests/hostile-agent.c"
        for mode in modes + lyingModes + wedgedModes {
            let macro = "MODE_" + mode.uppercased().replacing("-", with: "_")
            try Subprocess.checked([
                "gcc", "-static", "-O2", "-s", "-Wall", "-Werror", "-DHOSTILE_MODE=\(macro)",
                "-o", "\(directory)/hostile-agent-\(mode)", source,
            ])
        }
    }
}
