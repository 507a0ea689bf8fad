import ArgumentParser
import Sandbox
import Testing
@testable import rund

/// `rund run --rootfs-device`: the two devices parse, anything else is refused naming the
/// choices, and pmem with a named template (whose clones read through virtio-blk) is refused.
struct RootfsDeviceOptionTests {
    @Test func pmemAndBlkParseAndTheDefaultIsLeftToTheSandbox() throws {
        #expect(try RunCommand.parse(["--image", "i", "--rootfs-device", "pmem", "--", "true"]).rootfsDevice == .pmem)
        #expect(try RunCommand.parse(["--image", "i", "--rootfs-device", "blk", "--", "true"]).rootfsDevice == .blk)
        #expect(try RunCommand.parse(["--image", "i", "--", "true"]).rootfsDevice == nil)
    }

    @Test func anUnknownDeviceIsRefused() {
        #expect { try RunCommand.parse(["--image", "i", "--rootfs-device", "nvme", "--", "true"]) } throws: { error in
            RunCommand.message(for: error).contains("nvme")
        }
    }

    @Test func pmemWithANamedTemplateIsRefused() {
        #expect { try RunCommand.parse(["--image", "i", "--template", "t", "--rootfs-device", "pmem", "--", "true"]) } throws: {
            error in
            RunCommand.message(for: error).contains("drop --template or --rootfs-device pmem")
        }
    }
}
