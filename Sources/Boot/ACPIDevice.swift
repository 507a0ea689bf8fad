import GuestMemory

/// A device the guest learns about from the DSDT (COM1 is always declared).
public enum ACPIDevice: Equatable, Sendable {
    /// A virtio-mmio transport: register window and its edge-triggered, active-high GSI.
    case virtioMMIO(base: GuestAddress, size: UInt32, gsi: UInt32)

    /// The virtio-mmio devices for slots 0..<count at their `X86Layout` addresses and GSIs.
    public static func virtioMMIOSlots(count: Int) -> [ACPIDevice] {
        (0..<max(count, 0)).compactMap { slot in
            X86Layout.virtioMMIOAddress(slot: slot).map {
                .virtioMMIO(base: $0, size: UInt32(X86Layout.virtioMMIOSlotSize), gsi: X86Layout.virtioGSI(slot: slot))
            }
        }
    }
}
