import Foundation
import HostOS
import Testing

/// One L1 boot of a checks script (Guests/*-checks-in-l1.sh), which prints a
/// `CHECK name PASS|FAIL details` line per check; each test of a rig suite asserts one line.
enum RigChecks {
    struct Check {
        var passed: Bool
        var details: String
    }

    /// What the L1 script reported, and how the rig ended (a hang or crash leaves later checks
    /// without a line, and each of those tests says why).
    struct Report {
        var checks: [String: Check]
        var rigStatus: Int32
        var stderrTail: String
        /// L1 itself failed: the rig's own line saying so (anywhere in its stderr, before L1's console).
        var l1Failure: String?
        /// `EMULATOR-FAULT` lines: a script that runs sandboxes through a daemon (containerd)
        /// reports what that daemon's log says of crashed or stalled guests, since the failing
        /// command may show only its consequence ("task not found").
        var loggedFaults: [String] = []

        /// Check `name` passed; a check with no line says how the rig (`ranBy`) ended.
        func expectPassed(_ name: String, ranBy runner: String, sourceLocation: SourceLocation) {
            guard let check = checks[name] else {
                Issue.record(
                    "the L1 script printed no result for check \(name): \(runner) exited \(rigStatus); its stderr ends: \(stderrTail)",
                    sourceLocation: sourceLocation)
                return
            }
            #expect(check.passed, "\(name): \(check.details)", sourceLocation: sourceLocation)
        }

        /// The emulator's known faults (docs/rig.md, "L2 stalls"), when this boot ended in one:
        /// L1 itself gone or silent, or a failed check whose guest stalled or triple-faulted (as
        /// its details say, or, for sandboxes run by containerd, its log).
        /// None of them is a verdict on rund: the soak loops count them, CI boots L1 again.
        var emulatorFault: String? {
            if let l1Failure { return l1Failure }
            let failed = checks.sorted(by: { $0.key < $1.key }).filter { !$0.value.passed }
            for (name, check) in failed {
                for signature in ["guest made no progress", "triple fault on vCPU"] where check.details.contains(signature) {
                    return "check \(name) failed with \"\(signature)\""
                }
            }
            if let (name, _) = failed.first, let logged = loggedFaults.first {
                return "check \(name) failed in a boot whose log says \"\(logged)\""
            }
            return nil
        }
    }

    /// Runs `argv` (scripts/rig-run or scripts/rig-containerd with a checks script) and parses
    /// its lines. A boot that ended in an emulator fault is printed whole and run again, up to
    /// `RigHarness.bootsOnEmulatorFaults` boots in all; the last boot's report is the verdict, so
    /// a check that fails in a boot without such a fault fails.
    static func boot(_ label: String, _ argv: [String]) throws -> Report {
        var report = try bootOnce(label, argv)
        var boots = 1
        while let fault = report.emulatorFault, boots < RigHarness.bootsOnEmulatorFaults {
            boots += 1
            print("RIG-RETRY \(label): L1 boot \(boots - 1) ended in an emulator fault (\(fault)); booting L1 again (boot \(boots))")
            report = try bootOnce(label, argv)
        }
        return report
    }

    private static func bootOnce(_ label: String, _ argv: [String]) throws -> Report {
        let started = ContinuousClock.now
        let outcome = try Subprocess.run(argv)
        print("\(label): one L1 boot took \(ContinuousClock.now - started), status \(outcome.status)")
        print(outcome.stdoutText)
        print(outcome.stderrText)
        return parse(status: outcome.status, stdout: outcome.stdoutText, stderr: outcome.stderrText)
    }

    /// The `CHECK name PASS|FAIL details` lines of an L1 script's run.
    static func parse(status: Int32, stdout: String, stderr: String) -> Report {
        var checks: [String: Check] = [:]
        let loggedFaults = stdout.split(separator: "\n").filter { $0.hasPrefix("EMULATOR-FAULT ") }.map {
            String($0.dropFirst("EMULATOR-FAULT ".count))
        }
        for line in stdout.split(separator: "\n") where line.hasPrefix("CHECK ") {
            let fields = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
            guard fields.count >= 3 else { continue }
            checks[String(fields[1])] = Check(passed: fields[2] == "PASS", details: fields.count > 3 ? String(fields[3]) : "")
        }
        let tail = stderr.split(separator: "\n").suffix(15).joined(separator: " | ")
        return Report(
            checks: checks, rigStatus: status, stderrTail: String(tail.suffix(3000)),
            l1Failure: RigHarness.l1Failure(status: status, stderr: stderr), loggedFaults: loggedFaults)
    }
}
