import Foundation
import HostOS
import Testing

/// The end-to-end proof for the guest agent: inside the nested rig's L1, this package's test
/// bundle (AgentCoreTests/AgentInsideL1Tests) boots the stock kernel with an initramfs whose
/// /init is rund-agent, connects over virtio-vsock, runs a command through the agent API and
/// shuts the guest down.
@Suite(.enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason))
struct AgentInRigTests {
    @Test func hostDrivesTheAgentOverVsockInsideL1() throws {
        let work = try TestDirectory()
        let agent = work.path + "/rund-agent", initrd = work.path + "/agent-initrd"
        let image = work.path + "/image.erofs", writable = work.path + "/writable.ext4"
        // Stripped: every byte of the initramfs is unpacked under emulation, twice over.
        try Subprocess.checked(["strip", "-o", agent, RigHarness.agentBinary])
        try Subprocess.checked([
            RigHarness.repositoryRoot + "/scripts/make-guest-initramfs", "--out", initrd,
            "--init", agent, "--module", "virtio_mmio", "--module", "vmw_vsock_virtio_transport",
            "--module", "virtio_blk", "--module", "erofs", "--module", "overlay",
        ])
        // The container image: static busybox and a few applet links, as an EROFS filesystem.
        let tree = work.path + "/image-tree"
        try Subprocess.checked([
            "sh", "-c",
            "mkdir -p \(tree)/bin && cp \"$(command -v busybox)\" \(tree)/bin/busybox && for applet in sh cat hostname ls echo tty; do ln -s busybox \(tree)/bin/$applet; done",
        ])
        try Subprocess.checked(["mkfs.erofs", "--quiet", image, tree])
        try Subprocess.checked(["truncate", "-s", "32M", writable])
        try Subprocess.checked(["mkfs.ext4", "-q", writable])
        let kernel = RigHarness.stateRoot + "/kernel/current/vmlinuz"
        let bundle = RigHarness.testBundle
        // After the guest powered off, L1 reads the container's write back from the writable fs.
        let command = """
            RUND_AGENT_TEST_KERNEL=\(kernel) RUND_AGENT_TEST_INITRD=\(initrd) RUND_AGENT_TEST_IMAGE=\(image) \
            RUND_AGENT_TEST_WRITABLE=\(writable) \(bundle) --testing-library swift-testing --filter AgentInsideL1Tests
            status=$?
            debugfs -R 'cat /upper/upper-file' \(writable) 2>/dev/null | sed 's/^/host-sees: /'
            exit $status
            """
        let outcome = try RigHarness.run(
            ["sh", "-c", command], puts: [bundle, kernel, initrd, image, writable, "/usr/sbin/debugfs"], timeout: 600,
            onceMoreIfL1Fails: true)
        // swift-testing reports on stderr; the test's own lines and L2's console are on stdout.
        print(outcome.stdout + outcome.stderr)
        #expect(outcome.status == 0, "rig stderr: \(outcome.stderr)")
        #expect(outcome.stdout.contains(#"agent-test: stdout="hi\n" stderr="err\n" exit=3"#))
        #expect(outcome.stdout.contains("agent-test: container main: pid=1 host=fn-host"))
        #expect(outcome.stdout.contains("agent-test: machine exit: guest powered off"))
        #expect(outcome.stdout.contains("host-sees: layered"))
        #expect(outcome.stderr.contains("hostRunsACommandThroughTheAgentAndShutsTheGuestDown() passed"))
        #expect(!outcome.stderr.contains("skipped"))
    }
}

extension RigHarness {
    /// The static guest agent built next to this test bundle.
    static var agentBinary: String {
        URL(fileURLWithPath: testBundle).deletingLastPathComponent().appendingPathComponent("rund-agent").path
    }
}
