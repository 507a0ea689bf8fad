/// The interrupt wire of one device. The VMM implements it with an irqfd or `KVM_IRQ_LINE`;
/// the in-kernel IOAPIC pin is declared edge-triggered, so each call is one edge.
public protocol InterruptLine: Sendable {
    func trigger()
}
