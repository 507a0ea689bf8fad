import Foundation
import HostOS
@testable import Sandbox
import Testing

/// Which kernel cache entry a sandbox boots: rund's own (kernel/guest) when built, else the
/// stock one (kernel/current); a kernel asked for by name must be there.
struct GuestKernelTests {
    static func stateRoot() throws -> String {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "guest-kernel-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        ).path
        try FileSystem.makeDirectories(root + "/kernel/stock-1.0")
        try FileSystem.open(at: nil, root + "/kernel/stock-1.0/vmlinuz", O_WRONLY | O_CREAT, mode: 0o644).close()
        try FileManager.default.createSymbolicLink(atPath: root + "/kernel/current", withDestinationPath: "stock-1.0")
        return root
    }

    @Test func theStockKernelIsBootedUntilRundsOwnIsBuilt() throws {
        let root = try Self.stateRoot()
        defer { try? FileSystem.removeTree(root) }
        #expect(GuestKernel.preferred(stateRoot: root) == .stock)
        #expect(try GuestKernel.directory(stateRoot: root, choice: nil) == root + "/kernel/current")
        #expect(throws: SandboxError.self) { try GuestKernel.directory(stateRoot: root, choice: .rund) }

        try FileSystem.makeDirectories(root + "/kernel/rund-1.0-abc")
        try FileManager.default.createSymbolicLink(atPath: root + "/kernel/guest", withDestinationPath: "rund-1.0-abc")
        // A half-built entry (no vmlinuz yet) is not a kernel.
        #expect(GuestKernel.preferred(stateRoot: root) == .stock)
        try FileSystem.open(at: nil, root + "/kernel/rund-1.0-abc/vmlinuz", O_WRONLY | O_CREAT, mode: 0o644).close()
        #expect(GuestKernel.preferred(stateRoot: root) == .rund)
        #expect(try GuestKernel.directory(stateRoot: root, choice: nil) == root + "/kernel/guest")
        #expect(try GuestKernel.directory(stateRoot: root, choice: .stock) == root + "/kernel/current")
    }

    @Test func aMissingKernelIsNamedInTheError() throws {
        let root = try Self.stateRoot()
        defer { try? FileSystem.removeTree(root) }
        let error = try #require(throws: SandboxError.self) { try GuestKernel.directory(stateRoot: root, choice: .rund) }
        #expect(error.kind == .kernelCacheBroken)
        #expect(error.description == "no rund guest kernel is cached at \(root)/kernel/guest")
    }

    /// rund's own kernel, when scripts/build-guest-kernel has built it on this host: every
    /// module a sandbox would load is built in, so the initramfs carries none, and the image
    /// can be on virtio-pmem.
    @Test(
        .enabled(
            if: GuestKernel.preferred(stateRoot: StateRoot.resolve(nil)) == .rund,
            "rund's guest kernel is not built here: run scripts/build-guest-kernel"))
    func rundsOwnKernelHasEveryDriverBuiltIn() throws {
        let directory = GuestKernel.rund.directory(stateRoot: StateRoot.resolve(nil))
        let modules = GuestInitramfs.sandboxModules(imageOn: .pmem)
        #expect(modules.count >= 8)
        #expect(try GuestInitramfs.loadOrder(of: modules, kernelDirectory: directory) == [])
        #expect(GuestInitramfs.pmemUnsupportedReason(kernelDirectory: directory) == nil)
        // So a pmem sandbox boots from the agent image, with no initramfs at all.
        #expect(GuestAgentImage.usable(kernelDirectory: directory))
        let config = try String(contentsOfFile: directory + "/config", encoding: .utf8)
        #expect(config.contains("# CONFIG_MODULES is not set"))
    }

    /// The stock kernel's network driver is a module with dependencies of its own: the
    /// initramfs carries them, loaded first.
    @Test(
        .enabled(
            if: FileManager.default.fileExists(
                atPath: GuestKernel.stock.directory(stateRoot: StateRoot.resolve(nil)) + "/modules/modules.dep"),
            "the stock kernel is not cached here: run scripts/setup"))
    func theStockKernelLoadsVirtioNetAfterItsDependencies() throws {
        let directory = GuestKernel.stock.directory(stateRoot: StateRoot.resolve(nil))
        let order = try GuestInitramfs.loadOrder(of: GuestInitramfs.requiredModules, kernelDirectory: directory)
        let names = order.map { $0.split(separator: "/").last.map(String.init) ?? $0 }
        let net = try #require(names.firstIndex { $0.hasPrefix("virtio_net.") })
        let failover = try #require(names.firstIndex { $0.hasPrefix("failover.") })
        let netFailover = try #require(names.firstIndex { $0.hasPrefix("net_failover.") })
        #expect(failover < netFailover && netFailover < net)
    }
}
