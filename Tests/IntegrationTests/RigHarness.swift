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
    /// seconds (a wedged L1: the rig prints its vCPUs' state).
    static func run(
        _ command: [String], puts: [String] = [], timeout: Int = 300, idleTimeout: Int = 300,
        memoryMiB: Int? = nil
    ) throws -> Outcome {
        var argv = [script, "--timeout", "\(timeout)", "--idle-timeout", "\(idleTimeout)"]
        if let memoryMiB { argv += ["--memory", "\(memoryMiB)"] }
        for path in puts { argv += ["--put", path] }
        argv += ["--"] + command
        let result = try Subprocess.run(argv)
        return Outcome(status: result.status, stdout: result.stdoutText, stderr: result.stderrText)
    }

    /// This test process's own executable: the package's test bundle, which the rig can run
    /// again inside L1 with `--filter` to repeat a host test one level down.
    static var testBundle: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
    }
}
