import Foundation
import HostOS
import Testing

/// rund's VMM booting Debian's stock cloud kernel inside the nested rig. One L1 boot runs several
/// L2 boots (each costs real seconds under emulation): SMP, a writable and a read-only virtio-blk
/// disk, and a guest kernel panic.
@Suite(.enabled(if: RigHarness.isAvailable, RigHarness.unavailableReason))
struct LinuxBootInRigTests {
    @Test func bootsTheStockKernelWithSMPDisksAndPanicReporting() throws {
        let work = try TestDirectory()
        let initrd = work.path + "/initrd", disk = work.path + "/disk.img", roDisk = work.path + "/ro.img"
        try Subprocess.checked([
            RigHarness.repositoryRoot + "/scripts/make-guest-initramfs", "--out", initrd,
            "--init", RigHarness.repositoryRoot + "/Tests/IntegrationTests/Guests/linux-test-init.sh",
            "--module", "virtio_mmio", "--module", "virtio_blk",
        ])
        for image in [disk, roDisk] {
            try Subprocess.checked(["truncate", "-s", "32M", image])
            try Subprocess.checked(["mkfs.ext4", "-q", image])
        }
        let kernel = RigHarness.stateRoot + "/kernel/current/vmlinuz"
        let rund = RigHarness.rundBinary
        let boot = "\(rund) vm boot --kernel \(kernel) --initrd \(initrd) --memory 256 --console -"
        // quiet: every console byte is a VM exit, and exits are slow under emulation.
        let script = """
            \(boot) --vcpus 1 --cmdline \"quiet rundtest=smp\"; echo "status-1cpu=$?"
            \(boot) --vcpus 2 --disk \(disk) --cmdline \"quiet rundtest=write\"; echo "status-write=$?"
            debugfs -R 'cat /guest-file' \(disk) 2>/dev/null | sed 's/^/host-sees: /'
            \(boot) --vcpus 1 --disk \(roDisk),ro --cmdline \"quiet rundtest=readonly\"; echo "status-ro=$?"
            \(boot) --vcpus 1 --cmdline \"quiet rundtest=panic\" 2>&1; echo "status-panic=$?"
            """
        let outcome = try RigHarness.run(
            ["sh", "-c", script],
            puts: [rund, kernel, initrd, disk, roDisk, "/usr/sbin/debugfs"], timeout: 900,
            onceMoreIfL1Fails: true)
        let out = outcome.stdout
        print(out)
        #expect(out.contains("guest: mode=smp nproc=1"))
        #expect(out.contains("status-1cpu=0"))
        #expect(out.contains("guest: mode=write nproc=2"))
        #expect(out.contains("guest: wrote file"))
        #expect(out.contains("status-write=0"))
        #expect(out.contains("host-sees: hello from L2"))
        #expect(out.contains("guest: ro=1"))
        #expect(out.contains("guest: write refused"))
        #expect(out.contains("status-ro=0"))
        #expect(out.contains("rund: guest kernel panicked: Kernel panic - not syncing"))
        #expect(out.contains("status-panic=3"))
        #expect(outcome.status == 0, "rig stderr: \(outcome.stderr)")
    }
}

extension RigHarness {
    /// The rund executable built next to this test bundle.
    static var rundBinary: String {
        URL(fileURLWithPath: testBundle).deletingLastPathComponent().appendingPathComponent("rund").path
    }
}

/// A scratch directory removed when the test ends.
final class TestDirectory {
    let path: String

    init() throws {
        let template = NSTemporaryDirectory() + "rund-test-XXXXXX"
        var bytes = Array(template.utf8CString)
        guard let made = mkdtemp(&bytes) else { throw SystemError.last("mkdtemp") }
        path = String(cString: made)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}
