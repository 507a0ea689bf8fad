import Foundation
import HostOS
import Testing

/// scripts/rig itself: each boot of L1 under TCG costs seconds, so every test checks several
/// things per boot. Failures that stop before booting (no kernel cache, bad usage) are free.
@Suite(.enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason), .serialized)
struct RigTests {
    /// The acceptance check: /dev/kvm works in L1 and COMMAND's status comes back.
    @Test func commandSeesDevKVMAndItsStatusComesBack() throws {
        let outcome = try RigHarness.run(["sh", "-c", "ls -l /dev/kvm; exit 7"], timeout: 120)
        #expect(outcome.status == 7, "rig stderr: \(outcome.stderr)")
        #expect(outcome.stdout.contains("/dev/kvm"))
        #expect(outcome.stdout.hasPrefix("c"), "a character device: \(outcome.stdout)")
    }

    /// Files land at their own path or the one given; a dynamically linked program brings its
    /// libraries and loader; stdout and stderr stay apart and free of kernel console lines.
    @Test func putsFilesAndDynamicProgramsAndKeepsStreamsApart() throws {
        let note = "/etc/debian_version"
        let content = try String(contentsOfFile: note, encoding: .utf8)
        let script = """
            cat \(note) /data/renamed.txt
            /opt/rigtest/env --version | head -n 1
            /opt/rigtest/env -i RIG=dynamic /opt/rigtest/env
            echo only-on-stderr >&2
            """
        let outcome = try RigHarness.run(
            ["sh", "-c", script],
            puts: [note, "\(note):/data/renamed.txt", "/usr/bin/env:/opt/rigtest/env"], timeout: 180)
        #expect(outcome.status == 0, "rig stderr: \(outcome.stderr)")
        // GNU env, not busybox's: the dynamic binary ran with the libraries the rig brought.
        #expect(outcome.stdout.hasPrefix(content + content + "env (GNU coreutils)"), "stdout: \(outcome.stdout)")
        #expect(outcome.stdout.contains("RIG=dynamic\n"))
        #expect(!outcome.stdout.contains("only-on-stderr"))
        #expect(outcome.stderr == "only-on-stderr\n")
    }

    @Test func timeoutKillsL1AndExits124() throws {
        // A console path unique to this run names its QEMU process, so we can check it is gone.
        let console = "/tmp/rund-rigtest-\(getpid()).console"
        defer { unlink(console) }
        let result = try Subprocess.run([RigHarness.script, "--timeout", "12", "--console", console, "--", "sleep", "1000"])
        #expect(result.status == 124)
        #expect(result.stderrText.contains("timed out after 12s"))
        let survivors = try Subprocess.run(["sh", "-c", "ps -eo args | grep -F -- '\(console)' | grep -v grep"])
        #expect(survivors.stdoutText.isEmpty, "QEMU left running: \(survivors.stdoutText)")
    }

    @Test func kernelPanicInL1Exits125WithTheConsoleTail() throws {
        let outcome = try RigHarness.run(["sh", "-c", "echo c > /proc/sysrq-trigger"], timeout: 120)
        #expect(outcome.status == 125)
        #expect(outcome.stderr.contains("L1 failed"))
        #expect(outcome.stderr.contains("Kernel panic"))
    }

    @Test func missingKernelCacheFailsBeforeBootingWithAFix() throws {
        let result = try Subprocess.run([RigHarness.script, "--root", "/nonexistent/rund", "--", "true"])
        #expect(result.status == 125)
        #expect(
            result.stderrText == "rig: no guest kernel cached in /nonexistent/rund/kernel/current: "
                + "run scripts/setup --root /nonexistent/rund (as root)\n")
    }

    @Test func badUsageIsOneLineAndBootsNothing() throws {
        for argv in [["true"], ["--timeout", "soon", "--", "true"], ["--put", "/nonexistent/file", "--", "true"]] {
            let result = try Subprocess.run([RigHarness.script] + argv)
            #expect(result.status == 125, "\(argv)")
            #expect(result.stderrText.hasPrefix("rig: "), "\(argv)")
            #expect(result.stderrText.split(separator: "\n").count == 1, "\(argv): \(result.stderrText)")
        }
    }
}
