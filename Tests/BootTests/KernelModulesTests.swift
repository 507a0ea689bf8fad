import Boot
import Testing

struct KernelModulesTests {
    static let dependencies = """
        kernel/fs/overlayfs/overlay.ko:
        kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko: kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko kernel/net/vmw_vsock/vsock.ko
        kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko: kernel/net/vmw_vsock/vsock.ko
        kernel/net/vmw_vsock/vsock.ko:
        kernel/arch/x86/kvm/kvm-amd.ko.xz: kernel/arch/x86/kvm/kvm.ko.xz kernel/virt/lib/irqbypass.ko.xz
        kernel/arch/x86/kvm/kvm.ko.xz: kernel/virt/lib/irqbypass.ko.xz
        kernel/virt/lib/irqbypass.ko.xz:
        """

    @Test func dependenciesComeBeforeTheirUsersOnce() throws {
        let modules = KernelModules(dependencies: Self.dependencies)
        #expect(
            try modules.loadOrder(of: ["vmw-vsock-virtio-transport", "overlay", "vsock"]) == [
                "kernel/net/vmw_vsock/vsock.ko", "kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
                "kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko", "kernel/fs/overlayfs/overlay.ko",
            ])
        // Compressed module files, and names with dashes or underscores.
        #expect(
            try modules.loadOrder(of: ["kvm_amd"]) == [
                "kernel/virt/lib/irqbypass.ko.xz", "kernel/arch/x86/kvm/kvm.ko.xz", "kernel/arch/x86/kvm/kvm-amd.ko.xz",
            ])
    }

    @Test func builtInModulesNeedNothingAndUnknownOnesAreNamed() throws {
        let modules = KernelModules(
            dependencies: Self.dependencies, builtin: "kernel/fs/ext4/ext4.ko\nkernel/drivers/virtio/virtio_mmio.ko\n")
        #expect(try modules.loadOrder(of: ["ext4", "virtio-mmio", "overlay"]) == ["kernel/fs/overlayfs/overlay.ko"])
        #expect(throws: KernelModules.Error.unknownModules(["nope", "erofs"])) { try modules.loadOrder(of: ["nope", "overlay", "erofs"]) }
    }
}
