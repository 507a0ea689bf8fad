import Foundation
import HostOS
import Testing

/// Sandbox networks end to end, inside the rig's L1: virtio-net over a tap in the sandbox's own
/// network namespace, tc redirects to its veth, NAT, the agent configuring the guest side. All
/// traffic stays in L1. One L1 boot (Guests/network-checks-in-l1.sh) prints a line per check;
/// each test asserts one.
@Suite(
    .serialized,
    .enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason),
    .enabled(
        if: access("/bin/busybox", R_OK) == 0 && access("/usr/bin/mkfs.erofs", X_OK) == 0,
        "needs /bin/busybox (busybox-static) and mkfs.erofs (erofs-utils)"),
    .enabled(if: NetworkChecks.missingTools.isEmpty, "needs \(NetworkChecks.missingTools.joined(separator: ", ")) (iproute2, iptables)"))
struct NetworkInRigTests {
    @Test func aFunctionFetchesAPageFromL1() throws { try NetworkChecks.expectPassed("fetch-from-l1") }
    @Test func theStockKernelGetsTheNetworkToo() throws { try NetworkChecks.expectPassed("stock-kernel-fetch") }
    @Test func l1FetchesFromAFunctionThatServes() throws { try NetworkChecks.expectPassed("l1-fetches-from-guest") }
    @Test func twoSandboxesAtOnceGetDifferentAddresses() throws { try NetworkChecks.expectPassed("two-at-once") }
    @Test func withoutANetworkTheFetchFailsCleanly() throws { try NetworkChecks.expectPassed("network-none") }
    @Test func gcTakesBackTheNetworkOfAKilledRund() throws { try NetworkChecks.expectPassed("gc-after-kill") }
    @Test func nothingIsLeftBehind() throws { try NetworkChecks.expectPassed("no-leftovers") }
}

enum NetworkChecks {
    static let report: Result<RigChecks.Report, any Error> = Result { try runAll() }

    /// The host tools L1 gets: iproute2's and iptables (with its extensions, loaded at run time).
    static let tools = ["/usr/sbin/ip", "/usr/sbin/tc", "/usr/sbin/xtables-nft-multi", "/usr/lib/x86_64-linux-gnu/xtables"]
    static var missingTools: [String] { tools.filter { access($0, R_OK) != 0 } }
    /// Links, the tap, tc's redirect, and iptables' NAT on nftables.
    static let modules = [
        "tun", "veth", "sch_ingress", "cls_u32", "act_mirred", "nf_tables", "nft_compat", "nft_chain_nat", "nf_nat",
        "xt_MASQUERADE", "xt_comment",
    ]

    static func expectPassed(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try report.get().expectPassed(name, ranBy: "rig-run", sourceLocation: sourceLocation)
    }

    static func runAll() throws -> RigChecks.Report {
        let work = try TestDirectory()
        let binaries = URL(fileURLWithPath: RigHarness.testBundle).deletingLastPathComponent().path
        let scripts = RigHarness.repositoryRoot + "/scripts"
        let image = try Subprocess.checked([scripts + "/make-test-image", "--root", work.path + "/store", "--rund", binaries + "/rund"])
            .stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
        let puts = [
            "--put", "/usr/sbin/ip", "--put", "/usr/sbin/tc", "--put", "/usr/sbin/xtables-nft-multi:/usr/sbin/iptables",
            "--put", "/usr/lib/x86_64-linux-gnu/xtables",
        ]
        return try RigChecks.boot(
            "network-checks",
            [scripts + "/rig-run", "--bin", binaries, "--images-root", work.path + "/store", "--timeout", "1200", "--idle-timeout", "300"]
                + puts + modules.flatMap { ["--module", $0] }
                + ["--script", RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests/network-checks-in-l1.sh", image])
    }
}
