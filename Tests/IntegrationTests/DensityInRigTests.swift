import Foundation
import HostOS
import Testing

/// Density, inside the rig's L1. The image on virtio-pmem (EROFS mounted dax): every file reads
/// as it does through virtio-blk, writes land in the writable layer and leave the image alone,
/// and two sandboxes of one image hold its pages once on the host. Memory a guest frees goes
/// back to the host (free page reporting through virtio-balloon). One L1 boot
/// (Guests/density-checks-in-l1.sh) prints a line per check; each test asserts one.
@Suite(
    .serialized,
    .enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason),
    .enabled(
        if: access("/bin/busybox", R_OK) == 0 && access("/usr/bin/mkfs.erofs", X_OK) == 0,
        "needs /bin/busybox (busybox-static) and mkfs.erofs (erofs-utils)"))
struct DensityInRigTests {
    @Test func pmemReadsEveryFileAsBlkDoes() throws { try DensityChecks.expectPassed("pmem-reads-every-file-as-blk-does") }
    @Test func daxReadsBypassTheGuestsPageCache() throws { try DensityChecks.expectPassed("dax-reads-bypass-the-guests-page-cache") }
    @Test func writesLandInTheWritableLayer() throws { try DensityChecks.expectPassed("writes-land-in-the-writable-layer") }
    @Test func twoSandboxesShareTheImagePages() throws { try DensityChecks.expectPassed("two-sandboxes-share-the-image-pages") }
    @Test func freedGuestMemoryGoesBackToTheHost() throws { try DensityChecks.expectPassed("freed-guest-memory-goes-back-to-the-host") }
    @Test func freePageReportingTakesRunsOf128KiB() throws {
        try DensityChecks.expectPassed("free-page-reporting-takes-runs-of-128-KiB")
    }
    @Test func idleMemoryGoesBackToTheHost() throws { try DensityChecks.expectPassed("idle-memory-goes-back-to-the-host") }
    @Test func nothingIsLeftBehind() throws { try DensityChecks.expectPassed("no-leaks") }
}

enum DensityChecks {
    static let report: Result<RigChecks.Report, any Error> = Result { try runAll() }

    static func expectPassed(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try report.get().expectPassed(name, ranBy: "rig-run", sourceLocation: sourceLocation)
    }

    static func runAll() throws -> RigChecks.Report {
        let work = try TestDirectory()
        let binaries = URL(fileURLWithPath: RigHarness.testBundle).deletingLastPathComponent().path
        let scripts = RigHarness.repositoryRoot + "/scripts"
        // Four 1 MiB files under /opt/filler that nothing reads but the checks.
        let image = try Subprocess.checked([
            scripts + "/make-test-image", "--root", work.path + "/store", "--rund", binaries + "/rund", "--ref", "rundtest/filler:4",
            "--filler-mib", "4",
        ])
        .stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        return try RigChecks.boot(
            "density-checks",
            [
                scripts + "/rig-run", "--bin", binaries, "--images-root", work.path + "/store",
                "--timeout", "900", "--idle-timeout", "300",
                "--script", RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests/density-checks-in-l1.sh", image,
            ])
    }
}
