import Devices
import HostOS
import KVM

/// A device interrupt wired to a GSI through KVM's irqfd: `trigger()` is one eventfd write,
/// and KVM injects the edge without a VM exit.
final class IRQFDLine: InterruptLine {
    let gsi: UInt32
    private let eventFD: EventFD

    init(vm: VirtualMachine, gsi: UInt32) throws {
        self.gsi = gsi
        eventFD = try EventFD()
        try vm.registerIRQFD(eventFD, gsi: gsi)
    }

    func trigger() {
        // Only fails if the counter would overflow, which a pending interrupt never reaches.
        try? eventFD.signal()
    }
}
