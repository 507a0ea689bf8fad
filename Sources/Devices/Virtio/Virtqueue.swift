import GuestMemory
import Synchronization

/// One split virtqueue (spec 2.7) whose ring addresses were validated once, when the driver
/// enabled it. Every index the guest supplies is range-checked and every buffer address goes
/// through `GuestMemory`, so a hostile driver can break only its own device, never the host.
///
/// The guest's vCPUs write the rings while we read them, so ring fields are read and written
/// only through `GuestMemory`'s single-access accessors, in the order the spec's memory model
/// needs: an acquire load of the available index before the entries it publishes, a release
/// store of the used index after the elements it publishes, each value read exactly once.
public final class Virtqueue: Sendable {
    public let index: Int
    public let size: UInt16
    public let memory: GuestMemory
    /// VIRTIO_F_INDIRECT_DESC was negotiated: a descriptor may point to a table of descriptors.
    public let indirectDescriptors: Bool
    public let descriptorTable: GuestAddress
    public let availableRing: GuestAddress
    public let usedRing: GuestAddress

    struct State {
        var nextAvailable: UInt16 = 0
        var nextUsed: UInt16 = 0
        var active = true
    }

    private let state = Mutex(State())

    static let descriptorSize = 16
    /// Largest indirect table accepted; bounds the work one chain can cause.
    public static let maxIndirectEntries = 1024
    static let availableFlagNoInterrupt: UInt16 = 1

    /// Names of the three areas in errors, as the spec calls them.
    static let descriptorArea = "descriptor table"
    static let driverArea = "driver area"
    static let deviceArea = "device area"

    /// Validates the driver's queue configuration (size, alignment, ring placement): a ring that
    /// is misaligned or not wholly inside guest memory the device may use is refused here and
    /// never accessed.
    public init(
        index: Int, size: UInt16, maxSize: UInt16,
        descriptorTable: GuestAddress, driverArea: GuestAddress, deviceArea: GuestAddress, memory: GuestMemory,
        indirectDescriptors: Bool = false
    ) throws(VirtqueueError) {
        guard size > 0, size <= maxSize, size & (size - 1) == 0 else { throw .badSize(size, max: maxSize) }
        let count = Int(size)
        // Sizes and alignments from the spec's split virtqueue table (2.7).
        try Self.checkArea(
            Self.descriptorArea, at: descriptorTable, length: Self.descriptorSize * count, alignment: 16,
            writable: false, memory: memory)
        try Self.checkArea(Self.driverArea, at: driverArea, length: 6 + 2 * count, alignment: 2, writable: false, memory: memory)
        try Self.checkArea(Self.deviceArea, at: deviceArea, length: 6 + 8 * count, alignment: 4, writable: true, memory: memory)
        self.index = index
        self.size = size
        self.memory = memory
        self.indirectDescriptors = indirectDescriptors
        self.descriptorTable = descriptorTable
        self.availableRing = driverArea
        self.usedRing = deviceArea
    }

    private static func checkArea(
        _ name: String, at address: GuestAddress, length: Int, alignment: UInt64, writable: Bool, memory: GuestMemory
    ) throws(VirtqueueError) {
        guard address.isAligned(to: alignment) else { throw .misaligned(area: name, address: address, alignment: alignment) }
        do throws(GuestMemoryError) {
            try memory.checkAccess(at: address, length: length, writing: writable)
        } catch {
            throw .areaOutsideMemory(area: name, address: address, length: length)
        }
    }

    /// Stops all processing; waits for a call in progress on another thread to finish.
    public func deactivate() {
        state.withLock { $0.active = false }
    }

    /// Where the device is in the rings: the next available entry it will take and the next used
    /// entry it will fill. The rings themselves are in guest memory. Reading waits for a call in
    /// progress on another thread to finish.
    public struct Position: Sendable, Equatable {
        public var nextAvailable: UInt16
        public var nextUsed: UInt16

        public init(nextAvailable: UInt16, nextUsed: UInt16) {
            self.nextAvailable = nextAvailable
            self.nextUsed = nextUsed
        }
    }

    public var position: Position {
        state.withLock { Position(nextAvailable: $0.nextAvailable, nextUsed: $0.nextUsed) }
    }

    /// Continues from a saved position (a restored snapshot) instead of from 0.
    public func resume(at position: Position) {
        state.withLock { state in
            state.nextAvailable = position.nextAvailable
            state.nextUsed = position.nextUsed
        }
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
        try withActiveState { state throws(VirtqueueError) -> Bool in try processAvailable(&state, handle) }
    }

    /// Runs `body` on the state of an active queue (false when inactive); a throw deactivates it.
    func withActiveState(_ body: (inout State) throws(VirtqueueError) -> Bool) throws(VirtqueueError) -> Bool {
        try state.withLock { state throws(VirtqueueError) -> Bool in
            guard state.active else { return false }
            do throws(VirtqueueError) {
                return try body(&state)
            } catch {
                // A broken queue stays broken until the driver resets the device.
                state.active = false
                throw error
            }
        }
    }

    private func processAvailable(
        _ state: inout State, _ handle: (DescriptorChain) throws(VirtqueueError) -> UInt32?
    ) throws(VirtqueueError) -> Bool {
        let pending = try publishedAvailable(after: state.nextAvailable) &- state.nextAvailable
        var used = 0
        for _ in 0..<pending {
            let head = try availableHead(at: state.nextAvailable)
            guard let written = try handle(try DescriptorChain(head: head, in: self)) else { break }
            state.nextAvailable &+= 1
            try writeUsedElement(head: head, written: written, at: state.nextUsed)
            state.nextUsed &+= 1
            try publishUsed(state.nextUsed)
            used += 1
        }
        guard used > 0 else { return false }
        return try driverWantsInterrupt()
    }

    /// The available index the driver has published, checked against the one the device is at.
    /// Acquire: the ring entries the driver wrote before publishing it are read after it.
    func publishedAvailable(after nextAvailable: UInt16) throws(VirtqueueError) -> UInt16 {
        let published = try ring(Self.driverArea) { () throws(GuestMemoryError) in
            try memory.loadAcquire(UInt16.self, at: try availableRing.adding(2))
        }
        guard published &- nextAvailable <= size else {
            throw .availIndexJump(lastSeen: nextAvailable, published: published, size: size)
        }
        return published
    }

    /// The chain head in available-ring entry `index` (reduced modulo the queue size).
    func availableHead(at index: UInt16) throws(VirtqueueError) -> UInt16 {
        try ring(Self.driverArea) { () throws(GuestMemoryError) in
            try memory.loadVolatile(UInt16.self, at: try availableRing.adding(4 + 2 * UInt64(index % size)))
        }
    }

    /// Writes used-ring entry `index` (reduced modulo the queue size); not yet published.
    func writeUsedElement(head: UInt16, written: UInt32, at index: UInt16) throws(VirtqueueError) {
        let element = 4 + 8 * UInt64(index % size)
        try ring(Self.deviceArea) { () throws(GuestMemoryError) in
            try memory.storeVolatile(UInt32(head), at: try usedRing.adding(element))
            try memory.storeVolatile(written, at: try usedRing.adding(element + 4))
        }
    }

    /// Release: the elements written are visible to the driver before the index that publishes them.
    func publishUsed(_ nextUsed: UInt16) throws(VirtqueueError) {
        try ring(Self.deviceArea) { () throws(GuestMemoryError) in
            try memory.storeRelease(nextUsed, at: try usedRing.adding(2))
        }
    }

    /// After publishing used buffers: whether the driver wants an interrupt for them. Our used
    /// index must be visible before we read its flag.
    func driverWantsInterrupt() throws(VirtqueueError) -> Bool {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        let flags = try ring(Self.driverArea) { () throws(GuestMemoryError) in
            try memory.loadVolatile(UInt16.self, at: availableRing)
        }
        return flags & Self.availableFlagNoInterrupt == 0
    }

    /// Runs one access to a ring validated at init. It cannot fail (the regions are fixed and
    /// every offset is reduced modulo the queue size), but if it did, the queue breaks rather
    /// than the VMM.
    func ring<R>(_ area: String, _ access: () throws(GuestMemoryError) -> R) throws(VirtqueueError) -> R {
        do throws(GuestMemoryError) {
            return try access()
        } catch {
            switch error {
            case let .misaligned(address, alignment):
                throw .misaligned(area: area, address: address, alignment: UInt64(clamping: alignment))
            case let .outOfBounds(address, length): throw .areaOutsideMemory(area: area, address: address, length: length)
            case let .readOnly(address): throw .areaOutsideMemory(area: area, address: address, length: 0)
            case let .addressOverflow(address, offset):
                throw .areaOutsideMemory(area: area, address: address, length: Int(clamping: offset))
            case let .badRegion(base, size): throw .areaOutsideMemory(area: area, address: base, length: size)
            case let .overlappingRegions(base), let .fileMapping(base, _):
                throw .areaOutsideMemory(area: area, address: base, length: 0)
            }
        }
    }
}

struct Descriptor {
    static let flagNext: UInt16 = 1
    static let flagWrite: UInt16 = 2
    static let flagIndirect: UInt16 = 4

    let address: GuestAddress
    let length: UInt32
    let flags: UInt16
    let next: UInt16

    /// The descriptor at `address`, copied out of guest memory in one volatile read so every field
    /// is read once: the guest cannot change it between our checks and our use.
    init(at address: GuestAddress, in memory: GuestMemory) throws(GuestMemoryError) {
        var raw: (UInt64, UInt64) = (0, 0)
        try withUnsafeMutableBytes(of: &raw) { bytes throws(GuestMemoryError) in try memory.readVolatile(into: bytes, at: address) }
        // struct virtq_desc: le64 addr; le32 len; le16 flags; le16 next.
        let tail = UInt64(littleEndian: raw.1)
        self.address = GuestAddress(UInt64(littleEndian: raw.0))
        length = UInt32(truncatingIfNeeded: tail)
        flags = UInt16(truncatingIfNeeded: tail >> 32)
        next = UInt16(truncatingIfNeeded: tail >> 48)
    }
}
