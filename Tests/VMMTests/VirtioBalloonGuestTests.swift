import Foundation
import KVM
import Testing
@testable import VMM

/// virtio-balloon in the real VMM on the host's KVM, driven by a freestanding guest
/// (Guests/virtio_balloon_guest.c): pages the guest reports free or inflates go back to the host
/// (they read zero afterwards, as fresh anonymous memory does), pages it kept keep their data,
/// and a reported range outside RAM makes the device need a reset while the VMM carries on.
@Suite(.enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"))
struct VirtioBalloonGuestTests {
    /// Boots the balloon guest (built with `defines`, beside `pmemImages`) to its end.
    private func run(
        defines: [String: String] = [:], pmemImages: [String] = []
    ) throws -> (
        machine: Machine, exit: MachineExit, console: String, lines: [String]
    ) {
        let binary = try FreestandingGuest.build("virtio_balloon_guest.c", defines: defines)
        let directory = try TemporaryDirectory()
        let consolePath = directory.path + "/console.txt"
        var configuration = VMConfiguration(
            kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64, console: .file(consolePath))
        configuration.balloon = true
        configuration.pmemImages = pmemImages
        let machine = try Machine(configuration: configuration)
        let watchdog = Watchdog(seconds: 30) { machine.stop(signal: 9) }
        let exit = try machine.run()
        watchdog.cancel()
        let console = try String(contentsOfFile: consolePath, encoding: .utf8)
        return (machine, exit, console, console.split(separator: "\n").map(String.init))
    }

    @Test func reportedAndInflatedPagesGoBackToTheHost() throws {
        let (machine, exit, console, lines) = try run()

        #expect(exit == .poweredOff, "\(console)")
        #expect(lines.contains("filled: reported_nonzero=131072"), "\(console)")
        #expect(lines.contains("reported: used_idx=1 reported_nonzero=0"), "\(console)")
        // Four distinct pages given (the duplicate once, the PFN outside RAM skipped); the fifth kept.
        #expect(lines.contains("inflated: used_idx=1 given_nonzero=0 kept_nonzero=4096"), "\(console)")
        let balloon = try #require(machine.balloon)
        #expect(balloon.discardedByteCount == (8 << 20) + 4 * 4096)
        #expect(balloon.skippedRangeCount == 1)
        #expect(balloon.reportedBalloonPages == 4)
        // DEVICE_NEEDS_RESET (0x40) on top of the driver's 15: the chain was refused whole.
        #expect(lines.contains("hostile: used_idx=1 device_status=79"), "\(console)")
    }

    /// The guest names a pmem image's pages to the balloon (inflated, and reported free): the
    /// image is not guest RAM, so nothing of it is given back or written; the inflated page is
    /// skipped, the report is a malformed chain, and the image file is as it was.
    @Test func pagesOfThePmemImageAreNotTheBalloons() throws {
        let pmemBase = "0x2000000000ull"  // where the layout puts the first pmem image (VirtioPmemGuestTests)
        let directory = try TemporaryDirectory()
        let imagePath = directory.path + "/image.erofs"
        let image = (0..<(2 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        try Data(image).write(to: URL(fileURLWithPath: imagePath))
        let (machine, exit, console, lines) = try run(defines: ["PMEM_BASE": pmemBase], pmemImages: [imagePath])

        #expect(exit == .poweredOff, "\(console)")
        #expect(lines.contains("inflated: used_idx=1 given_nonzero=0 kept_nonzero=4096"), "\(console)")
        let balloon = try #require(machine.balloon)
        // The same RAM given back as without the image; the image's page skipped beside the PFN outside RAM.
        #expect(balloon.discardedByteCount == (8 << 20) + 4 * 4096)
        #expect(balloon.skippedRangeCount == 2)
        #expect(lines.contains("hostile: used_idx=1 device_status=79"), "\(console)")
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: imagePath))) == image)
        #expect(machine.pmemDevices.first?.flushCount == 0)
    }
}
