import Foundation
import HostOS
import Testing

/// What the containerd rig suites need on the host (CRIInRigTests too).
let hasContainerd = ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc"].allSatisfy { (path: String) in access(path, X_OK) == 0
}
let canBuildStaticC = access("/usr/bin/gcc", X_OK) == 0 && access("/usr/lib/x86_64-linux-gnu/libc.a", R_OK) == 0

/// containerd runs functions in rund sandboxes (issue 13), inside the rig's L1 (real KVM):
/// Debian's containerd, `ctr` and the rund shim, every check in one L1 boot
/// (Guests/containerd-checks-in-l1.sh through `scripts/rig-containerd`), one result line per
/// check; each test asserts one.
@Suite(
    .serialized,
    .enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason),
    .enabled(if: hasContainerd, "needs containerd, ctr and runc (scripts/setup installs them)"),
    .enabled(if: access("/bin/busybox", R_OK) == 0, "needs /bin/busybox (busybox-static) for the test image"),
    .enabled(if: canBuildStaticC, "needs gcc and a static libc (libc6-dev) for the pty helper"))
struct ContainerdInRigTests {
    @Test func ctrImportsTheImage() throws { try ContainerdChecks.expectPassed("import") }
    @Test func ctrRunPrintsTheOutputAndExitsWithTheStatus() throws { try ContainerdChecks.expectPassed("run-exit") }
    @Test func aDetachedTaskRuns() throws { try ContainerdChecks.expectPassed("long-running") }
    @Test func execRunsASecondProcessWithItsOutputAndStatus() throws { try ContainerdChecks.expectPassed("exec") }
    @Test func psListsTheProcesses() throws { try ContainerdChecks.expectPassed("ps") }
    @Test func metricsAreReported() throws { try ContainerdChecks.expectPassed("metrics") }
    @Test func pauseAndResumeStopAndRestartTheVCPUs() throws { try ContainerdChecks.expectPassed("pause-resume") }
    @Test func sigtermReachesTheProcesssTrap() throws { try ContainerdChecks.expectPassed("sigterm-trap") }
    @Test func taskAndContainerDeleteLeaveNoShim() throws { try ContainerdChecks.expectPassed("delete") }
    @Test func aTerminalHasItsSizeAndFollowsResizes() throws { try ContainerdChecks.expectPassed("tty") }
    @Test func twoSandboxesRunAtOnceIsolated() throws { try ContainerdChecks.expectPassed("two-sandboxes") }
    @Test func aShimKilledMidRunIsCleanedUp() throws { try ContainerdChecks.expectPassed("sigkill-shim") }
    @Test func nothingIsLeftBehind() throws { try ContainerdChecks.expectPassed("no-leaks") }
}

/// The one L1 boot every ContainerdInRigTests test reads its result from.
enum ContainerdChecks {
    static let report: Result<RigChecks.Report, any Error> = Result { try runAll() }

    static func expectPassed(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try report.get().expectPassed(name, ranBy: "rig-containerd", sourceLocation: sourceLocation)
    }

    static func runAll() throws -> RigChecks.Report {
        let work = try TestDirectory()
        let binaries = URL(fileURLWithPath: RigHarness.testBundle).deletingLastPathComponent().path
        let scripts = RigHarness.repositoryRoot + "/scripts"
        let guests = RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests"
        try Subprocess.checked([scripts + "/make-test-image", "--archive", work.path + "/bb.tar"])
        try Subprocess.checked(["gcc", "-static", "-O2", "-s", "-Wall", "-Werror", "-o", work.path + "/ptyrun", guests + "/ptyrun.c"])
        return try RigChecks.boot(
            "containerd-checks",
            [
                scripts + "/rig-containerd", "--bin", binaries, "--timeout", "1500",
                "--put", work.path + "/bb.tar:/opt/checks/bb.tar", "--put", work.path + "/ptyrun:/opt/checks/ptyrun",
                "--put", guests + "/containerd-checks-in-l1.sh:/opt/checks/checks.sh",
                "--", "sh", "/opt/checks/checks.sh", "/opt/checks/bb.tar", "/opt/checks/ptyrun",
            ])
    }
}
