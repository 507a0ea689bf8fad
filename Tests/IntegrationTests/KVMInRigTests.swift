import Testing

/// The host-KVM long-mode guest test (KVMTests/LongModeGuestTests), run again inside the nested
/// rig's L1 against a real (SVM-backed) /dev/kvm: proves the rig and our KVM layer together.
@Suite(.enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason))
struct KVMInRigTests {
    @Test func longModeGuestRunsOnL1KVM() throws {
        let bundle = RigHarness.testBundle
        let outcome = try RigHarness.run(
            [
                "sh", "-c",
                "echo L1 booted: $(cat /proc/version); ls -l /dev/kvm && exec \(bundle) --testing-library swift-testing --filter LongModeGuestTests",
            ],
            puts: [bundle], onceMoreIfL1Fails: true)
        // swift-testing reports on stderr.
        print(outcome.stdout + outcome.stderr)
        #expect(outcome.status == 0, "rig stderr: \(outcome.stderr)")
        #expect(outcome.stdout.contains("L1 booted: Linux version"))
        #expect(outcome.stdout.contains("/dev/kvm"))
        #expect(outcome.stderr.contains("guestWritesToAPortAndHalts() passed"))
        #expect(!outcome.stderr.contains("skipped"))
    }
}
