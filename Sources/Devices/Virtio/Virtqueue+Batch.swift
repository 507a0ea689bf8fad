import GuestMemory
import Synchronization

/// The driver's available chains, taken one at a time for a message that may span several
/// (virtio-net's mergeable receive buffers): chains taken and then committed go on the used ring
/// together; chains taken but not committed go back, available again for a later call.
public struct AvailableChains: ~Copyable {
    let queue: Virtqueue
    /// The available index the driver published when the call began.
    let published: UInt16
    /// The next available entry `next()` returns.
    var taken: UInt16
    /// Where the committed chains end: `taken` falls back here when the call ends.
    var committedUpTo: UInt16
    /// Heads not yet committed, in the order taken.
    var pending: [UInt16] = []
    /// (head, bytes written) for the used ring, in order.
    var used: [(head: UInt16, written: UInt32)] = []

    /// The next available chain, or nil when the driver has posted no more.
    public mutating func next() throws(VirtqueueError) -> DescriptorChain? {
        guard taken != published else { return nil }
        let head = try queue.availableHead(at: taken)
        let chain = try DescriptorChain(head: head, in: queue)
        taken &+= 1
        pending.append(head)
        return chain
    }

    /// Puts every chain taken since the last commit on the used ring, with the bytes written into
    /// each (`written[i]` for the i-th taken; a missing entry counts 0).
    public mutating func commit(written: [UInt32]) {
        for (index, head) in pending.enumerated() {
            used.append((head, index < written.count ? written[index] : 0))
        }
        pending.removeAll(keepingCapacity: true)
        committedUpTo = taken
    }
}

extension Virtqueue {
    /// Runs `body` over the available chains (`AvailableChains`) under the queue's lock, then
    /// publishes what it committed with one used-index store. Returns true when chains were used
    /// and the driver did not suppress interrupts. A malformed chain breaks the queue, as in
    /// `processAvailable`.
    public func takeAvailable(
        _ body: (inout AvailableChains) throws(VirtqueueError) -> Void
    ) throws(VirtqueueError) -> Bool {
        try withActiveState { state throws(VirtqueueError) -> Bool in
            let published = try publishedAvailable(after: state.nextAvailable)
            var chains = AvailableChains(
                queue: self, published: published, taken: state.nextAvailable, committedUpTo: state.nextAvailable)
            try body(&chains)
            state.nextAvailable = chains.committedUpTo
            guard !chains.used.isEmpty else { return false }
            for element in chains.used {
                try writeUsedElement(head: element.head, written: element.written, at: state.nextUsed)
                state.nextUsed &+= 1
            }
            // One store publishes every element: the driver never sees part of a message.
            try publishUsed(state.nextUsed)
            return try driverWantsInterrupt()
        }
    }
}

extension Virtqueue {
    /// VRING_USED_F_NO_NOTIFY: the driver need not notify (a hint the driver may ignore).
    static let usedFlagNoNotify: UInt16 = 1

    /// Asks the driver to notify (or not) when it makes buffers available. A device that turns
    /// notifications back on must then look again (`hasAvailable`): buffers made available
    /// before the driver saw the flag came without a notification.
    public func setNotifications(enabled: Bool) throws(VirtqueueError) {
        _ = try withActiveState { _ throws(VirtqueueError) -> Bool in
            try ring(Self.deviceArea) { () throws(GuestMemoryError) in
                try memory.storeVolatile(enabled ? 0 : Self.usedFlagNoNotify, at: usedRing)
            }
            // The flag is visible before the available index is read again.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            return true
        }
    }

    /// Whether the driver has made chains available that the device has not taken.
    public var hasAvailable: Bool {
        get throws(VirtqueueError) {
            try withActiveState { state throws(VirtqueueError) -> Bool in
                try publishedAvailable(after: state.nextAvailable) != state.nextAvailable
            }
        }
    }
}
