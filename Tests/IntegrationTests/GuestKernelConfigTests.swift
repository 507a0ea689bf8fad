import Foundation
import HostOS
import Testing

/// scripts/build-guest-kernel's check of a built .config against kernel/rund-guest.config: an
/// option the fragment asks for and the config lacks (dropped by olddefconfig for a missing
/// dependency) fails with its name. The real kernel's config is checked too when it is built.
struct GuestKernelConfigTests {
    static let script = RigHarness.repositoryRoot + "/scripts/build-guest-kernel"
    static let fragment = RigHarness.repositoryRoot + "/kernel/rund-guest.config"

    /// A config holding exactly what the fragment asks for.
    static func completeConfig() throws -> [String] {
        try String(contentsOfFile: fragment, encoding: .utf8).split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix("CONFIG_") || $0.hasSuffix(" is not set") }
    }

    static func check(_ lines: [String]) throws -> Subprocess.Result {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kconfig-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            .path
        defer { try? FileSystem.unlink(at: nil, path) }
        try FileSystem.open(at: nil, path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(
            Array((lines.joined(separator: "\n") + "\n").utf8))
        return try Subprocess.run([script, "--check-config", path])
    }

    @Test func aConfigWithEveryOptionPasses() throws {
        let lines = try Self.completeConfig()
        #expect(lines.count > 50)
        let result = try Self.check(lines + ["CONFIG_SOMETHING_ELSE=y"])
        #expect(result.status == 0, "\(result.stderrText)")
    }

    @Test func aDroppedOptionFailsWithItsName() throws {
        var lines = try Self.completeConfig()
        lines.removeAll { $0 == "CONFIG_VIRTIO_PMEM=y" }
        lines.append("# CONFIG_VIRTIO_PMEM is not set")
        lines = lines.map { $0 == "CONFIG_EROFS_FS=y" ? "CONFIG_EROFS_FS=m" : $0 }
        lines.removeAll { $0 == "# CONFIG_MODULES is not set" }
        lines.append("CONFIG_MODULES=y")
        let result = try Self.check(lines)
        #expect(result.status == 1)
        let named = result.stderrText.split(separator: "\n").filter { $0.hasPrefix("  CONFIG_") }.map { $0.dropFirst(2) }
        #expect(
            Set(named) == [
                "CONFIG_VIRTIO_PMEM (wanted y, got off)", "CONFIG_EROFS_FS (wanted y, got m)", "CONFIG_MODULES (wanted off, got y)",
            ],
            "\(result.stderrText)")
    }

    @Test(
        .enabled(
            if: access(StateRoot.resolve(nil) + "/kernel/guest/config", R_OK) == 0,
            "rund's guest kernel is not built here: run scripts/build-guest-kernel"))
    func theBuiltKernelHasEveryOption() throws {
        let result = try Subprocess.run([Self.script, "--check-config", StateRoot.resolve(nil) + "/kernel/guest/config"])
        #expect(result.status == 0, "\(result.stderrText)")
    }
}
