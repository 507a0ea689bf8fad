import Dispatch
import Foundation
import KVM
import Synchronization
import Testing
@testable import VMM

/// The real VMM with a vsock device, driven by a freestanding guest on the host's KVM: the
/// guest's packets arrive through MMIO exits on the vCPU thread, the host answers from another
/// thread through `Machine.vsock`, in the same process.
@Suite(.enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"))
struct VirtioVsockGuestTests {
    @Test func guestConnectsAndExchangesDataWithTheHostInProcess() throws {
        let binary = try FreestandingGuest.build("virtio_vsock_guest.c", defines: [:])
        let directory = try TemporaryDirectory()
        let consolePath = directory.path + "/console.txt"
        var configuration = VMConfiguration(
            kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64, console: .file(consolePath))
        configuration.vsockGuestCID = 3
        let machine = try Machine(configuration: configuration)
        let endpoint = try #require(machine.vsock)
        let listener = try endpoint.listen(port: 1024)
        let received = Mutex<[UInt8]>([])
        let host = DispatchGroup()
        DispatchQueue.global().async(group: host) {
            guard let stream = try? listener.accept(timeout: .seconds(20)) else { return }
            let greeting = (try? stream.read(upTo: 100, timeout: .seconds(20))) ?? []
            received.withLock { $0 = greeting }
            try? stream.write(Array("hello from the host".utf8))
            // Held until the guest shut down, so the guest sees its RST rather than our SHUTDOWN.
            _ = try? stream.read(upTo: 1, timeout: .seconds(20))
            stream.close()
        }
        let watchdog = Watchdog(seconds: 30) { machine.stop(signal: 9) }
        let exit = try machine.run()
        watchdog.cancel()
        #expect(host.wait(timeout: .now() + 20) == .success)
        let console = try String(contentsOfFile: consolePath, encoding: .utf8)
        #expect(exit == .poweredOff, "\(console)")
        #expect(console.contains("cid=3\n"))
        #expect(console.contains("op=2 buf_alloc=262144\n"), "\(console)")
        #expect(received.withLock { $0 } == Array("hello from the guest".utf8))
        #expect(console.contains("op=5 data=hello from the host\n"), "\(console)")
        #expect(console.contains("op=3 device_status=15\n"), "\(console)")
    }

    @Test func reservedCIDsAreRefusedBeforeAnythingIsBuilt() {
        var configuration = VMConfiguration(kernelPath: "/nonexistent")
        configuration.vsockGuestCID = 2
        #expect(throws: VMError.self) { try configuration.validate() }
        configuration.vsockGuestCID = 3
        configuration.disks = Array(repeating: .init(path: "/x", readOnly: true), count: VirtioSlots.maxDevices)
        #expect(throws: VMError.self) { try configuration.validate() }
    }
}
