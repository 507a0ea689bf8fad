import Foundation
import KVM
import Testing
@testable import VMM

/// virtio-pmem in the real VMM on the host's KVM, driven by a freestanding guest
/// (Guests/virtio_pmem_guest.c): the image appears at the address the device reports, byte for
/// byte and padded with zeros to 2 MiB; the guest cannot change it; flushes succeed, other
/// requests are answered or refused without harm.
@Suite(.enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"))
struct VirtioPmemGuestTests {
    static let text = "rund pmem image: read-only, shared"
    static let pages = 3

    /// An image of `pages` 4 KiB pages: the text, then a byte pattern.
    static func image(pages: Int) -> [UInt8] {
        var bytes = (0..<(pages * 4096)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        bytes.replaceSubrange(0..<text.utf8.count, with: text.utf8)
        bytes[text.utf8.count] = 0
        return bytes
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x100_0000_01b3
        }
        return hash
    }

    @Test func theGuestReadsTheImageAndCannotChangeIt() throws {
        let binary = try FreestandingGuest.build("virtio_pmem_guest.c", defines: ["HASHED": "\(Self.pages * 4096)"])
        let directory = try TemporaryDirectory()
        let imagePath = directory.path + "/image.erofs", consolePath = directory.path + "/console.txt"
        let image = Self.image(pages: Self.pages)
        try Data(image).write(to: URL(fileURLWithPath: imagePath))

        var configuration = VMConfiguration(
            kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64, console: .file(consolePath))
        configuration.pmemImages = [imagePath]
        let machine = try Machine(configuration: configuration)
        let watchdog = Watchdog(seconds: 30) { machine.stop(signal: 9) }
        let exit = try machine.run()
        watchdog.cancel()
        let console = try String(contentsOfFile: consolePath, encoding: .utf8)
        let lines = console.split(separator: "\n").map(String.init)

        #expect(exit == .poweredOff, "\(console)")
        // Where the layout puts it, padded to 2 MiB.
        #expect(lines.contains("start=0x0000002000000000 size=2097152"), "\(console)")
        #expect(lines.contains("text=\(Self.text)"), "\(console)")
        let expected = String(Self.fnv1a(image), radix: 16)
        #expect(
            lines.contains("fnv=0x" + String(repeating: "0", count: 16 - expected.count) + expected + " padding_nonzero=0"),
            "\(console)")
        // Writes to the read-only slot are dropped: the guest reads back what was there.
        #expect(lines.contains("after_write: first_changed=0 last=0"), "\(console)")
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: imagePath))) == image)
        // A flush succeeds; an unknown type gets VIRTIO_PMEM_RESP_TYPE_EIO; a request without a
        // response buffer is used with nothing written. The device never needs a reset.
        #expect(lines.contains("flush: used_idx=1 used_len=4 ret=0x0000000000000000 device_status=15"), "\(console)")
        #expect(lines.contains("unknown: used_idx=2 used_len=4 ret=0x0000000000000001 device_status=15"), "\(console)")
        #expect(lines.contains("malformed: used_idx=3 used_len=0 ret=0x00000000deadbeef device_status=15"), "\(console)")
        #expect(machine.pmemDevices.first?.flushCount == 1)
        #expect(machine.pmemDevices.first?.refusedCount == 1)
    }

    @Test func anImageOfPartPagesIsRefusedBeforeAnyVMExists() throws {
        let directory = try TemporaryDirectory()
        let path = directory.path + "/odd.img"
        try Data(repeating: 1, count: 4097).write(to: URL(fileURLWithPath: path))
        try Data([0xf4]).write(to: URL(fileURLWithPath: directory.path + "/hlt.bin"))
        var configuration = VMConfiguration(
            kernelPath: directory.path + "/hlt.bin", kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64)
        configuration.pmemImages = [path]
        #expect(throws: VMError.badPmemImage(path: path, reason: "its 4097 bytes are not a whole number of 4096-byte pages")) {
            _ = try Machine(configuration: configuration)
        }
    }
}
