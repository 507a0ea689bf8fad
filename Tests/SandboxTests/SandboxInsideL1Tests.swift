#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HostOS
import Sandbox
import Synchronization
import Testing

/// Run by RunInRigTests inside the nested rig's L1 (real KVM): many sandboxes one after the other
/// in one process must leave its descriptors, threads and pooled cgroups as they found them.
@Suite(.enabled(if: SandboxL1Environment.current != nil, SandboxL1Environment.skipReason))
struct SandboxInsideL1Tests {
    @Test func sandboxesOneAfterAnotherLeakNoDescriptorsThreadsOrCgroups() async throws {
        let environment = try #require(SandboxL1Environment.current)
        // One after another, each the process's only sandbox while it runs: the process joins
        // each sandbox's cgroup and steps out again 21 times.
        let sandbox = Sandbox(stateRoot: environment.stateRoot, agentPath: environment.agent, soleSandboxInProcess: true)
        // The first run makes what lives for the process (the pool mount, the concurrency
        // pool's threads, the initramfs cache): measure from after it.
        let warmUp = try await Self.runOnce(sandbox, image: environment.image, index: 0)
        #expect(warmUp == 0)
        let before = Self.usage()
        let started = ContinuousClock.now
        for index in 1...environment.runs {
            let status = try await Self.runOnce(sandbox, image: environment.image, index: index)
            #expect(status == 0, "run \(index) exited \(status)")
        }
        let took = ContinuousClock.now - started
        // Idle worker threads (Dispatch, the cooperative pool) leave on their own, not at once:
        // libdispatch lets a worker idle 5 s before it exits, so wait well past that (CI run 16
        // saw one worker started by the last run still there after 5 s).
        var after = Self.usage()
        for _ in 0..<120 where after.threads > before.threads {
            try await Task.sleep(for: .milliseconds(100))
            after = Self.usage()
        }
        let held = Self.heldCgroups()
        print(
            "sandbox-l1: runs=\(environment.runs) took=\(took) fds=\(before.fds)->\(after.fds) threads=\(before.threads)->\(after.threads) held-cgroups=\(held.count)"
        )
        #expect(after.fds == before.fds, "descriptors before: \(before.fdTargets), after: \(after.fdTargets)")
        #expect(after.threads <= before.threads, "threads \(before.threads) -> \(after.threads)")
        #expect(held.isEmpty, "cgroup entries still held: \(held)")
    }

    static func runOnce(_ sandbox: Sandbox, image: String, index: Int) async throws -> Int32 {
        let output = Mutex("")
        let spec = SandboxSpec(
            id: "l1-leak-\(index)", image: image, command: ["sh", "-c", "echo run-\(index)"],
            stallTimeout: .seconds(60))
        let exit = try await sandbox.run(spec: spec) { _, bytes in
            output.withLock { $0 += String(decoding: bytes, as: UTF8.self) }
        }
        #expect(output.withLock { $0 } == "run-\(index)\n")
        return exit.status
    }

    struct Usage {
        var fds: Int
        var fdTargets: [String]
        var threads: Int
    }

    static func usage() -> Usage {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        let targets = names.sorted().map {
            "\($0)->" + ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\($0)")) ?? "?")
        }
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let threads =
            status.split(separator: "\n").first { $0.hasPrefix("Threads:") }
            .flatMap { Int($0.dropFirst("Threads:".count).trimmingCharacters(in: .whitespaces)) } ?? -1
        // Listing the directory opens one descriptor of its own, which shows up in the list.
        return Usage(fds: names.count, fdTargets: targets, threads: threads)
    }

    /// Pool entries under /sys/fs/cgroup/rund that are still taken: a `sb-` name (cgroup v1) or
    /// the holder attribute (cgroup v2, where entries cannot be renamed), or processes inside.
    static func heldCgroups() -> [String] {
        let parent = "/sys/fs/cgroup/rund"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []
        return entries.filter { name in
            guard name.hasPrefix("pool-") || name.hasPrefix("sb-") else { return false }
            let procs = (try? String(contentsOfFile: "\(parent)/\(name)/cgroup.procs", encoding: .utf8)) ?? ""
            return name.hasPrefix("sb-") || FileSystem.extendedAttribute("\(parent)/\(name)", name: "trusted.rund.holder") != nil
                || !procs.isEmpty
        }
    }
}

/// What RunInRigTests' L1 script passes in the environment.
enum SandboxL1Environment {
    struct Values {
        var stateRoot: String
        var agent: String
        var image: String
        var runs: Int
    }

    static let current: Values? = {
        guard let root = getenv("RUND_SANDBOX_TEST_ROOT"), let agent = getenv("RUND_SANDBOX_TEST_AGENT"),
            let image = getenv("RUND_SANDBOX_TEST_IMAGE"), FileSystem.exists("/dev/kvm"),
            !FileSystem.exists("/sys/module/kvm_pvm")
        else { return nil }
        let runs = getenv("RUND_SANDBOX_TEST_RUNS").flatMap { Int(String(cString: $0)) } ?? 20
        return Values(stateRoot: String(cString: root), agent: String(cString: agent), image: String(cString: image), runs: runs)
    }()

    static let skipReason: Comment = """
        runs inside the nested rig only (RunInRigTests sets RUND_SANDBOX_TEST_ROOT/AGENT/IMAGE): \
        needs a /dev/kvm that boots Linux, which this host's PVM does not
        """
}
