import Devices
import GuestMemory

extension Machine {
    /// A virtio-vsock device behind its transport, attached so host writes reach the guest at once.
    static func makeVsock(
        guestCID: UInt32, memory: GuestMemory, interrupt: any InterruptLine
    ) throws(VMError) -> (VirtioMMIOTransport, VsockHostEndpoint) {
        let device: VirtioVsock
        do {
            device = try VirtioVsock(guestCID: guestCID)
        } catch {
            throw .setup(error.description)
        }
        let transport = VirtioMMIOTransport(device: device, memory: memory, interrupt: interrupt)
        device.attach(to: transport)
        return (transport, device.host)
    }
}
