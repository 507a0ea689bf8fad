import Foundation
import Testing
@testable import VMM

/// Stopping a VM from outside (what SIGTERM does through the CLI) ends it promptly, joins every
/// vCPU thread and releases the machine (its fds close when the last reference goes).
@Suite(.enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"))
struct MachineLifecycleTests {
    @Test(arguments: [1, 4])
    func stopEndsASpinningGuestAndReleasesEverything(vcpus: Int) throws {
        let binary = try FreestandingGuest.build("virtio_blk_guest.c", defines: ["SCENARIO": "9"])
        let directory = try TemporaryDirectory()
        let console = directory.path + "/console.txt"
        weak var released: Machine?
        try {
            let machine = try Machine(
                configuration: VMConfiguration(
                    kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64,
                    vcpuCount: vcpus, console: .file(console)))
            released = machine
            // Stopped once the guest is spinning (it printed so), however long the host took to get it there.
            let stopper = Watchdog(
                seconds: 60, once: { (try? String(contentsOfFile: console, encoding: .utf8))?.contains("spinning") == true }
            ) { machine.stop(signal: 15) }
            let exit = try machine.run()
            stopper.cancel()
            #expect(exit == .stoppedBySignal(15))
            #expect(exit.exitStatus == 143)
        }()
        #expect(released == nil, "the machine (and its VM, vCPU and device fds) must be freed")
        #expect(try String(contentsOfFile: console, encoding: .utf8).contains("spinning"))
    }
}
