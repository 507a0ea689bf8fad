import GuestMemory
import Synchronization

/// One split virtqueue (spec 2.7) whose ring addresses were validated once, when the driver
/// enabled it. Every index the guest supplies is range-checked and every buffer address goes
/// through `GuestMemory`, so a hostile driver can break only its own device, never the host.
public final class Virtqueue: Sendable {
    public let index: Int
    public let size: UInt16
    public let memory: GuestMemory
    /// VIRTIO_F_INDIRECT_DESC was negotiated: a descriptor may point to a table of descriptors.
    public let indirectDescriptors: Bool
    let descriptorTable: RingArea
    let availableRing: RingArea
    let usedRing: RingArea

    private struct State {
        var nextAvailable: UInt16 = 0
        var nextUsed: UInt16 = 0
        var active = true
    }

    private let state = Mutex(State())

    static let descriptorSize = 16
    /// Largest indirect table accepted; bounds the work one chain can cause.
    public static let maxIndirectEntries = 1024
    static let availableFlagNoInterrupt: UInt16 = 1

    /// Validates the driver's queue configuration (size, alignment, ring placement).
    public init(
        index: Int, size: UInt16, maxSize: UInt16,
        descriptorTable: UInt64, driverArea: UInt64, deviceArea: UInt64, memory: GuestMemory,
        indirectDescriptors: Bool = false
    ) throws(VirtqueueError) {
        guard size > 0, size <= maxSize, size & (size - 1) == 0 else { throw .badSize(size, max: maxSize) }
        let count = Int(size)
        // Sizes and alignments from the spec's split virtqueue table (2.7).
        self.descriptorTable = try RingArea(
            "descriptor table", at: descriptorTable, length: Self.descriptorSize * count, alignment: 16,
            writable: false, memory: memory)
        self.availableRing = try RingArea(
            "driver area", at: driverArea, length: 6 + 2 * count, alignment: 2, writable: false, memory: memory)
        self.usedRing = try RingArea(
            "device area", at: deviceArea, length: 6 + 8 * count, alignment: 4, writable: true, memory: memory)
        self.index = index
        self.size = size
        self.memory = memory
        self.indirectDescriptors = indirectDescriptors
    }

    /// Stops all processing; waits for a call in progress on another thread to finish.
    public func deactivate() {
        state.withLock { $0.active = false }
    }

    /// Hands each newly available descriptor chain to `handle`, which returns how many bytes it
    /// wrote into the chain's device-writable buffers, and puts it on the used ring.
    /// Returns true when buffers were used and the driver did not suppress interrupts.
    public func processAvailable(
        _ handle: (DescriptorChain) throws(VirtqueueError) -> UInt32
    ) throws(VirtqueueError) -> Bool {
        try processAvailable(declining: { chain throws(VirtqueueError) -> UInt32? in try handle(chain) })
    }

    /// Like `processAvailable`, but `handle` may return nil to leave that chain, and all after it,
    /// available for a later call: for buffers that wait for data (virtio-vsock's receive queue).
    public func processAvailable(
        declining handle: (DescriptorChain) throws(VirtqueueError) -> UInt32?
    ) throws(VirtqueueError) -> Bool {
        try state.withLock { state throws(VirtqueueError) -> Bool in
            guard state.active else { return false }
            let published = availableRing.load(UInt16.self, at: 2)
            // Ring entries written before the index must be read after it.
            atomicMemoryFence(ordering: .acquiring)
            let pending = published &- state.nextAvailable
            guard pending <= size else {
                state.active = false
                throw .availIndexJump(lastSeen: state.nextAvailable, published: published, size: size)
            }
            var used = 0
            for _ in 0..<pending {
                let slot = Int(state.nextAvailable % size)
                let head = availableRing.load(UInt16.self, at: 4 + 2 * slot)
                do throws(VirtqueueError) {
                    guard let written = try handle(try DescriptorChain(head: head, in: self)) else { break }
                    state.nextAvailable &+= 1
                    pushUsed(head: head, written: written, state: &state)
                    used += 1
                } catch {
                    // A broken queue stays broken until the driver resets the device.
                    state.active = false
                    throw error
                }
            }
            guard used > 0 else { return false }
            // Our used index must be visible before we read whether the driver wants an interrupt.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            return availableRing.load(UInt16.self, at: 0) & Self.availableFlagNoInterrupt == 0
        }
    }

    private func pushUsed(head: UInt16, written: UInt32, state: inout State) {
        let slot = Int(state.nextUsed % size)
        usedRing.store(UInt32(head), at: 4 + 8 * slot)
        usedRing.store(written, at: 8 + 8 * slot)
        // The element must be visible before the index that publishes it.
        atomicMemoryFence(ordering: .releasing)
        state.nextUsed &+= 1
        usedRing.store(state.nextUsed, at: 2)
    }
}

struct Descriptor {
    static let flagNext: UInt16 = 1
    static let flagWrite: UInt16 = 2
    static let flagIndirect: UInt16 = 4

    let address: UInt64
    let length: UInt32
    let flags: UInt16
    let next: UInt16

    /// Descriptor `index` of `table`, copied out once so the guest cannot change it under us.
    /// Callers keep `index` below the table's entry count.
    init(_ index: Int, of table: RingArea) {
        let offset = Virtqueue.descriptorSize * index
        address = table.load(UInt64.self, at: offset)
        length = table.load(UInt32.self, at: offset + 8)
        flags = table.load(UInt16.self, at: offset + 12)
        next = table.load(UInt16.self, at: offset + 14)
    }
}

/// A ring area validated to lie in one guest memory region; accessed by offsets we compute
/// from indices reduced modulo the queue size, so they stay inside it.
struct RingArea: @unchecked Sendable {
    // The host mapping outlives the queue: GuestMemory's regions are fixed and the queue holds it.
    let host: UnsafeMutableRawPointer
    let length: Int

    init(host: UnsafeMutableRawPointer, length: Int) {
        self.host = host
        self.length = length
    }

    init(
        _ name: String, at address: UInt64, length: Int, alignment: UInt64, writable: Bool, memory: GuestMemory
    ) throws(VirtqueueError) {
        guard address % alignment == 0 else { throw .misaligned(area: name, address: address) }
        let host = writable
            ? memory.writablePointer(at: address, length: length)
            : memory.readablePointer(at: address, length: length)
        guard let host else { throw .areaOutsideMemory(area: name, address: address, length: length) }
        self.host = host
        self.length = length
    }

    func load<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= length, "ring offset outside validated area")
        return T(littleEndian: host.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        precondition(offset >= 0 && offset + MemoryLayout<T>.size <= length, "ring offset outside validated area")
        host.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}
