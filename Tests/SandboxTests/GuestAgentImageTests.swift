import Foundation
import HostOS
@testable import Sandbox
import Testing

/// The agent's root image a guest with rund's kernel boots from (real mkfs.erofs; the rig's
/// sandbox suites boot it).
@Suite(
    .enabled(
        if: FileManager.default.isExecutableFile(atPath: "/usr/bin/mkfs.erofs"), "needs mkfs.erofs (apt-get install erofs-utils)"))
struct GuestAgentImageTests {
    /// A fresh state root holding a stand-in agent of 10,005 bytes: (root, agent path).
    static func makeStateRoot() throws -> (String, String) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "agent-image-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        ).path
        try FileSystem.makeDirectories(root)
        let agent = root + "/rund-agent"
        let file = try FileSystem.open(at: nil, agent, O_WRONLY | O_CREAT | O_EXCL, mode: 0o755)
        try file.writeAll(Array(repeating: 0x7f, count: 10_000) + Array("agent".utf8))
        file.close()
        return (root, agent)
    }

    static func withStateRoot(_ body: (String, String) throws -> Void) throws {
        let (root, agent) = try makeStateRoot()
        defer { try? FileSystem.removeTree(root) }
        try body(root, agent)
    }

    static func withStateRootAsync(_ body: @Sendable (String, String) async throws -> Void) async throws {
        let (root, agent) = try makeStateRoot()
        defer { try? FileSystem.removeTree(root) }
        try await body(root, agent)
    }

    @Test func theImageIsAnEROFSOfWholePagesBuiltOnce() throws {
        try Self.withStateRoot { root, agent in
            let path = try GuestAgentImage.path(stateRoot: root, agentPath: agent)
            #expect(path.hasPrefix(root + "/agent-images/") && path.hasSuffix(".erofs"))
            let bytes = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC).readToEnd(limit: 1 << 20)
            #expect(bytes.count % 4096 == 0)
            // The EROFS superblock magic at 1024, little-endian 0xE0F5E1E2.
            #expect(Array(bytes[1024..<1028]) == [0xE2, 0xE1, 0xF5, 0xE0])
            // The agent's bytes are in it whole (uncompressed, not inlined).
            #expect(bytes.count >= 10_005)
            let first = try #require(try FileSystem.status(at: nil, path))
            #expect(try GuestAgentImage.path(stateRoot: root, agentPath: agent) == path)
            let again = try #require(try FileSystem.status(at: nil, path))
            #expect(first.st_ino == again.st_ino && first.st_mtim.tv_nsec == again.st_mtim.tv_nsec)
            // Init's console exists before anything mounts /dev, and the agent is executable.
            let console = try Subprocess.checked(["dump.erofs", "--path=/dev/console", path]).stdoutText
            #expect(console.contains("char dev"))
            let initFile = try Subprocess.checked(["dump.erofs", "--path=/init", path]).stdoutText
            #expect(initFile.contains("Size: 10005") && initFile.contains("0755"))
            // Nothing but the image is left in its directory (no staging tree, no temporary).
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: root + "/agent-images").sorted()
                    == [".build.lock", String(path.split(separator: "/").last!)])
        }
    }

    @Test func sandboxesStartedTogetherMapOneImage() async throws {
        try await Self.withStateRootAsync { root, agent in
            let paths = try await withThrowingTaskGroup(of: (String, ino_t).self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let path = try GuestAgentImage.path(stateRoot: root, agentPath: agent)
                        let file = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC)
                        defer { file.close() }
                        return (path, try FileSystem.status(of: file).st_ino)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(paths.count == 4)
            #expect(Set(paths.map(\.0)).count == 1)
            #expect(Set(paths.map(\.1)).count == 1)
        }
    }

    @Test func aChangedAgentGetsANewImage() throws {
        try Self.withStateRoot { root, agent in
            let before = try GuestAgentImage.path(stateRoot: root, agentPath: agent)
            let file = try FileSystem.open(at: nil, agent, O_WRONLY | O_APPEND)
            try file.writeAll(Array("v2".utf8))
            file.close()
            #expect(try GuestAgentImage.path(stateRoot: root, agentPath: agent) != before)
        }
    }

    @Test func aMissingAgentIsNamed() throws {
        try Self.withStateRoot { root, agent in
            let error = try #require(throws: SandboxError.self) {
                try GuestAgentImage.path(stateRoot: root, agentPath: agent + "-gone")
            }
            #expect(error.kind == .agentMissing)
            #expect(error.description.contains(agent + "-gone"))
        }
    }

    @Test func theStockKernelBootsFromAnInitramfs() throws {
        // Modules to load (the stock kernel's) mean an initramfs: a kernel cache entry whose
        // modules.dep lists the sandbox's drivers as modules is not usable.
        try Self.withStateRoot { root, _ in
            let kernel = root + "/kernel"
            try FileSystem.makeDirectories(kernel + "/modules")
            let dep = GuestInitramfs.sandboxModules(imageOn: .pmem).map { "kernel/\($0).ko:\n" }.joined()
            try FileSystem.open(at: nil, kernel + "/modules/modules.dep", O_WRONLY | O_CREAT, mode: 0o644).writeAll(dep)
            try FileSystem.open(at: nil, kernel + "/config", O_WRONLY | O_CREAT, mode: 0o644).writeAll(
                "CONFIG_FS_DAX=y\n# CONFIG_MODULES is not set\n")
            #expect(GuestInitramfs.pmemUnsupportedReason(kernelDirectory: kernel) == nil)
            #expect(!GuestAgentImage.usable(kernelDirectory: kernel))
        }
    }
}
