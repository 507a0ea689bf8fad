import Devices
import GuestMemory

extension Machine {
    /// A virtio-vsock device; the caller wires it into a slot and attaches it to its transport
    /// (so host writes reach the guest at once).
    static func makeVsock(guestCID: UInt32) throws(VMError) -> VirtioVsock {
        do {
            return try VirtioVsock(guestCID: guestCID)
        } catch {
            throw .setup(error.description)
        }
    }
}
