import Foundation
import HostOS
import Testing

/// Kubernetes pods through containerd's CRI plugin (issue 15), inside the rig's L1 (real KVM): a
/// real CRI client (Python grpcio, generated from Guests/cri/runtime_v1.proto) against
/// Debian's containerd with CRI, handlers `rund` and `runc`; every check in one L1 boot
/// (Guests/cri/cri-checks-in-l1.py through `scripts/rig-containerd --cri`), one line per check.
@Suite(
    .serialized,
    .enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason),
    .enabled(if: hasContainerd, "needs containerd, ctr and runc (scripts/setup installs them)"),
    .enabled(if: access("/usr/bin/python3", X_OK) == 0, "needs Debian's python3 and python3-venv (scripts/setup installs them)"),
    .enabled(if: access("/bin/busybox", R_OK) == 0, "needs /bin/busybox (busybox-static) for the test images"),
    .enabled(if: canBuildStaticC, "needs gcc and a static libc (libc6-dev) for the pause program"),
    .enabled(
        if: access("/usr/lib/cni/bridge", X_OK) == 0 && access("/usr/sbin/ip", X_OK) == 0 && access("/usr/sbin/tc", X_OK) == 0,
        "needs CNI's plugins and iproute2 for the pod network (scripts/setup installs them)"))
struct CRIInRigTests {
    @Test func theCRIPluginAnswers() throws { try CRIChecks.expectPassed("version") }
    @Test func aPodsTwoContainersShareOneVMEachWithItsOwnRootfs() throws { try CRIChecks.expectPassed("pod-two-containers") }
    @Test func execSyncReturnsOutputAndExitCode() throws { try CRIChecks.expectPassed("exec-sync") }
    @Test func containerStatsReportEachContainersMemory() throws { try CRIChecks.expectPassed("container-stats") }
    @Test func execWithATerminalGetsItsSizeAndExitCode() throws { try CRIChecks.expectPassed("exec-terminal") }
    @Test func anExitCodeReachesTheContainerStatus() throws { try CRIChecks.expectPassed("exit-code") }
    @Test func anOOMKillIsReportedAsOOMKilled() throws { try CRIChecks.expectPassed("oom-killed") }
    @Test func updatedMemoryLimitsApplyInTheGuest() throws { try CRIChecks.expectPassed("update-resources") }
    @Test func removingOneContainerKeepsTheOther() throws { try CRIChecks.expectPassed("remove-one-keeps-other") }
    @Test func stoppingAndRemovingThePodLeavesNothing() throws { try CRIChecks.expectPassed("pod-teardown-leaves-nothing") }
    @Test func aPodOnTheCNINetworkReachesL1WithItsPodAddress() throws { try CRIChecks.expectPassed("pod-network") }
    @Test func runcRunsTheSamePodInTheSameL1() throws { try CRIChecks.expectPassed("runc-peer") }
}

/// The one L1 boot every CRIInRigTests test reads its result from.
enum CRIChecks {
    static let report: Result<RigChecks.Report, any Error> = Result { try runAll() }

    static func expectPassed(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try report.get().expectPassed(name, ranBy: "rig-containerd --cri", sourceLocation: sourceLocation)
    }

    static func runAll() throws -> RigChecks.Report {
        let binaries = URL(fileURLWithPath: RigHarness.testBundle).deletingLastPathComponent().path
        let scripts = RigHarness.repositoryRoot + "/scripts"
        let checks = RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests/cri/cri-checks-in-l1.py"
        return try RigChecks.boot(
            "cri-checks",
            [
                scripts + "/rig-containerd", "--cri", "--bin", binaries, "--timeout", "1200",
                "--put", checks + ":/opt/cri/checks.py", "--", "python3", "/opt/cri/checks.py",
            ])
    }
}
