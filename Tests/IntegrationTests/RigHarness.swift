import Foundation
import HostOS
import Testing

/// Runs commands inside the nested rig (scripts/rig): L1 Linux under QEMU TCG with a real
/// /dev/kvm. Every rig suite is named *InRigTests or RigTests so scripts/test runs them one at a time.
enum RigHarness {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let script = repositoryRoot + "/scripts/rig"
    static let stateRoot = StateRoot.resolve(nil)

    static let isAvailable: Bool =
        access(script, X_OK) == 0
        && access("\(stateRoot)/kernel/current/vmlinuz", R_OK) == 0
        && (try? Subprocess.run(["sh", "-c", "command -v qemu-system-x86_64"]).status) == 0
    static let unavailableReason: Comment =
        "needs qemu-system-x86_64 and the guest kernel cache: run scripts/setup"

    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// `scripts/rig [--put P]... -- command`: copies `puts` in at the same paths, returns what came out.
    /// L1 is killed after `timeout` seconds, or when the command writes nothing for `idleTimeout`
    /// seconds (a wedged L1: the rig prints its vCPUs' state). With `onceMoreIfL1Fails`, an L1
    /// that itself failed (`l1Failure`) is printed and booted again, up to
    /// `bootsOnEmulatorFaults` boots in all; the last boot's outcome is returned. Tests that
    /// make L1 fail on purpose leave it off.
    static func run(
        _ command: [String], puts: [String] = [], timeout: Int = 300, idleTimeout: Int = 300,
        memoryMiB: Int? = nil, onceMoreIfL1Fails: Bool = false
    ) throws -> Outcome {
        var argv = [script, "--timeout", "\(timeout)", "--idle-timeout", "\(idleTimeout)"]
        if let memoryMiB { argv += ["--memory", "\(memoryMiB)"] }
        for path in puts { argv += ["--put", path] }
        argv += ["--"] + command
        var result = try Subprocess.run(argv)
        var boots = 1
        while onceMoreIfL1Fails, boots < bootsOnEmulatorFaults, let failure = l1Failure(status: result.status, stderr: result.stderrText) {
            boots += 1
            print("RIG-RETRY: L1 boot \(boots - 1) failed in the emulator (\(failure)); booting L1 again (boot \(boots)). It printed:")
            print(result.stdoutText + result.stderrText)
            result = try Subprocess.run(argv)
        }
        return Outcome(status: result.status, stdout: result.stdoutText, stderr: result.stderrText)
    }

    /// At most this many L1 boots of one suite when each ends in an emulator fault: CI run 13
    /// met two in a row (a triple fault, then L1's own kernel crashing).
    static let bootsOnEmulatorFaults = 3

    /// scripts/rig's own note when L1 itself failed: it ended without an exit status (125), or
    /// printed nothing for the idle timeout (124). Both are the emulator's faults (docs/rig.md,
    /// "L2 stalls"), not a verdict on what ran in L1.
    static func l1Failure(status: Int32, stderr: String) -> String? {
        let note = stderr.split(separator: "\n").first { line in
            line.hasPrefix("rig: ")
                && (status == 125 && line.contains("L1 failed") || status == 124 && line.contains("without output"))
        }
        return note.map(String.init)
    }

    /// This test process's own executable: the package's test bundle, which the rig can run
    /// again inside L1 with `--filter` to repeat a host test one level down.
    static var testBundle: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
    }
}
