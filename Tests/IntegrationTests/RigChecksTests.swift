import Testing

/// Which ends of an L1 boot count as the emulator's fault (and so earn one more boot): the rig's
/// own notes and the guest-stall and triple-fault messages of failed checks, never a check that
/// failed for any other reason.
struct RigChecksTests {
    @Test func anL1WithoutAnExitStatusIsTheEmulators() {
        let report = RigChecks.parse(
            status: 125, stdout: "CHECK exit-status PASS took=3s\n",
            stderr: "rig: L1 failed (kernel panic, init failure or QEMU error): no exit status came back\n[ 12.3] console line\n")
        #expect(report.emulatorFault?.contains("L1 failed") == true)
        #expect(report.checks["exit-status"]?.passed == true)
    }

    @Test func aSilentL1IsTheEmulators() {
        let report = RigChecks.parse(status: 124, stdout: "", stderr: "rig: killed L1 after 300s without output\n")
        #expect(report.emulatorFault?.contains("without output") == true)
    }

    @Test func aStalledOrTripleFaultedGuestInAFailedCheckIsTheEmulators() {
        let stalled = RigChecks.parse(
            status: 0,
            stdout:
                "CHECK isolation FAIL first=[125: ] stderr=rund: the VM ended before its agent answered: guest made no progress (no VM exit for 60.0 seconds)\n",
            stderr: "")
        #expect(stalled.emulatorFault == "check isolation failed with \"guest made no progress\"")
        let crashed = RigChecks.parse(
            status: 0, stdout: "CHECK ten-clones-at-once FAIL failed=1 stderr=rund: guest crashed: triple fault on vCPU 0\n", stderr: "")
        #expect(crashed.emulatorFault == "check ten-clones-at-once failed with \"triple fault on vCPU\"")
    }

    @Test func aFailedCheckInABootWhoseDaemonLoggedAGuestCrashIsTheEmulators() {
        let report = RigChecks.parse(
            status: 0,
            stdout: """
                CHECK two-sandboxes FAIL b=[ctr: no running task found: task iso-b not found: not found ]
                EMULATOR-FAULT containerd.log: level=warning msg="Start failed: the guest crashed: triple fault on vCPU 0"
                """,
            stderr: "")
        #expect(report.emulatorFault?.hasPrefix("check two-sandboxes failed in a boot whose log says") == true)
        let allPassed = RigChecks.parse(
            status: 0, stdout: "CHECK two-sandboxes PASS\nEMULATOR-FAULT containerd.log: triple fault on vCPU 0\n", stderr: "")
        #expect(allPassed.emulatorFault == nil)
    }

    @Test func otherFailuresAndPassedStallChecksAreNot() {
        let report = RigChecks.parse(
            status: 1,
            stdout: """
                CHECK stall-watchdog PASS status=125 stderr=rund: guest made no progress (no VM exit for 10.0 seconds)
                CHECK no-leaks FAIL left=/sys/fs/cgroup/rund/pool/3
                """,
            stderr: "rig: timed out after 1800s: L1 killed\n")
        #expect(report.emulatorFault == nil)
        #expect(report.checks["no-leaks"]?.passed == false)
        #expect(report.checks["stall-watchdog"]?.passed == true)
    }

    @Test func aLineThatOnlyMentionsTheRigsWordsIsNotItsNote() {
        let report = RigChecks.parse(status: 125, stdout: "", stderr: "rund: L1 failed to answer\n")
        #expect(report.emulatorFault == nil)
    }
}
