import Foundation
import HostOS
import Testing

/// microVM templates end to end, inside the rig's L1: a template of the real kernel and agent,
/// clones that run at once with their own writes, RNG and clock, automatic use, ten clones at
/// once, and refusals of a template that does not fit or is damaged. One L1 boot
/// (Guests/template-checks-in-l1.sh) prints a line per check; each test asserts one.
@Suite(
    .serialized,
    .enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason),
    .enabled(
        if: access("/bin/busybox", R_OK) == 0 && access("/usr/bin/mkfs.erofs", X_OK) == 0,
        "needs /bin/busybox (busybox-static) and mkfs.erofs (erofs-utils)"))
struct TemplateInRigTests {
    @Test func aTemplateIsMadeFromTheRealKernelAndAgent() throws { try TemplateChecks.expectPassed("template-create") }
    @Test func twoClonesRunAtOnceWithTheirOwnWrites() throws { try TemplateChecks.expectPassed("clones-run-with-their-own-writes") }
    @Test func clonesDrawDifferentRandomBytes() throws { try TemplateChecks.expectPassed("clones-draw-different-random-bytes") }
    @Test func withoutTheIdentityAClonesClockIsTheTemplates() throws {
        try TemplateChecks.expectPassed("without-identity-a-clone-keeps-the-templates-clock")
    }
    @Test func clonesHaveTheHostsTime() throws { try TemplateChecks.expectPassed("clones-have-the-hosts-time") }
    @Test func aFittingTemplateIsUsedAndNoTemplateBoots() throws {
        try TemplateChecks.expectPassed("a-fitting-template-is-used-and-no-template-boots")
    }
    @Test func tenClonesStartedAtOnceAllRun() throws { try TemplateChecks.expectPassed("ten-clones-at-once") }
    @Test func aCloneGivesIdleMemoryBack() throws { try TemplateChecks.expectPassed("a-clone-gives-idle-memory-back") }
    @Test func aTemplateOfAnotherKernelIsRefused() throws { try TemplateChecks.expectPassed("refuse-another-kernel") }
    @Test func aFlippedStateByteIsRefused() throws { try TemplateChecks.expectPassed("refuse-flipped-state-byte") }
    @Test func aFlippedMemoryByteIsRefused() throws { try TemplateChecks.expectPassed("refuse-flipped-memory-byte") }
    @Test func removalLeavesNothing() throws { try TemplateChecks.expectPassed("template-rm-and-no-leaks") }
}

enum TemplateChecks {
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
        return try RigChecks.boot(
            "template-checks",
            [
                scripts + "/rig-run", "--bin", binaries, "--images-root", work.path + "/store",
                "--timeout", "1200", "--idle-timeout", "300",
                "--script", RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests/template-checks-in-l1.sh", image,
            ])
    }
}
