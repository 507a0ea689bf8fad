import Devices
import GuestMemory
import Logging

/// The guest side of virtio-mmio, written from the spec: drives a transport only through its
/// registers and a split virtqueue it lays out in guest memory, as Linux's virtio_mmio does.
final class VirtioTestDriver {
    struct Buffer {
        let address: GuestAddress
        let length: UInt32
        let writable: Bool
    }

    static let descriptorTable: GuestAddress = 0x1000
    static let availableRing: GuestAddress = 0x2000
    static let usedRing: GuestAddress = 0x3000

    /// The driver's side of one queue.
    struct DriverQueue {
        var size: UInt16
        var availableIndex: UInt16 = 0
        var nextDescriptor: UInt16 = 0
    }

    let memory: GuestMemory
    let transport: VirtioMMIOTransport
    let interrupts = InterruptCounter()
    private(set) var queues: [DriverQueue] = []
    var queueSize: UInt16 { queues.first?.size ?? 0 }
    var availableIndex: UInt16 { queues.first?.availableIndex ?? 0 }

    init(device: any VirtioDevice, memory: GuestMemory? = nil, logger: Logger? = nil) throws {
        let memory = try memory ?? GuestMemory.anonymous([(base: 0, size: 1 << 20)])
        self.memory = memory
        self.transport = VirtioMMIOTransport(
            device: device, memory: memory, interrupt: interrupts,
            logger: logger ?? Logger(label: "rund.devices.virtio-mmio"))
    }

    func read(_ offset: UInt64) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) { transport.read(offset: offset, into: $0) }
        return UInt32(littleEndian: value)
    }

    func write(_ offset: UInt64, _ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { transport.write(offset: offset, $0) }
    }

    var status: UInt32 { read(0x70) }
    var needsReset: Bool { status & Virtio.Status.needsReset != 0 }

    var offeredFeatures: UInt64 {
        write(0x14, 0)
        let low = read(0x10)
        write(0x14, 1)
        return UInt64(read(0x10)) << 32 | UInt64(low)
    }

    /// Ring addresses of `queue`: queue 0 at the static addresses, each further one 3 pages on.
    static func rings(queue: Int) -> (descriptorTable: GuestAddress, availableRing: GuestAddress, usedRing: GuestAddress) {
        let offset = 0x3000 * UInt64(queue)
        return (descriptorTable + offset, availableRing + offset, usedRing + offset)
    }

    /// The spec's initialisation sequence (3.1.1) for queues 0..<queueCount (queue 0 at the given
    /// ring addresses). Returns false when the device refused a step (FEATURES_OK not accepted,
    /// or it asked for a reset).
    @discardableResult
    func initialize(
        queueSize: UInt16 = 16, features: UInt64? = nil, queueCount: Int = 1,
        descriptorTable: GuestAddress = descriptorTable, availableRing: GuestAddress = availableRing, usedRing: GuestAddress = usedRing
    ) -> Bool {
        write(0x70, 0)
        write(0x70, Virtio.Status.acknowledge)
        write(0x70, Virtio.Status.acknowledge | Virtio.Status.driver)
        let wanted = features ?? offeredFeatures
        write(0x24, 0)
        write(0x20, UInt32(truncatingIfNeeded: wanted))
        write(0x24, 1)
        write(0x20, UInt32(truncatingIfNeeded: wanted >> 32))
        write(0x70, Virtio.Status.acknowledge | Virtio.Status.driver | Virtio.Status.featuresOK)
        guard status & Virtio.Status.featuresOK != 0 else { return false }
        queues = []
        for index in 0..<queueCount {
            let rings = index == 0 ? (descriptorTable, availableRing, usedRing) : Self.rings(queue: index)
            guard setUpQueue(index, size: queueSize, rings: rings) else { return false }
        }
        write(0x70, Virtio.Status.acknowledge | Virtio.Status.driver | Virtio.Status.featuresOK | Virtio.Status.driverOK)
        return status & Virtio.Status.driverOK != 0 && !needsReset && read(0x44) == 1
    }

    private func setUpQueue(_ index: Int, size: UInt16, rings: (GuestAddress, GuestAddress, GuestAddress)) -> Bool {
        let (descriptorTable, availableRing, usedRing) = rings
        write(0x30, UInt32(index))
        // No QueueNumMax check: a hostile driver ignores it, and the device must refuse.
        guard read(0x44) == 0 else { return false }
        queues.append(DriverQueue(size: size))
        // GuestMemory.write refuses read-only regions (zero(at:) does not check).
        let page = [UInt8](repeating: 0, count: 0x1000)
        try? memory.write(page, at: GuestAddress(availableRing.rawValue & ~0xfff))
        try? memory.write(page, at: GuestAddress(usedRing.rawValue & ~0xfff))
        write(0x38, UInt32(size))
        for (register, address) in [(0x80, descriptorTable), (0x90, availableRing), (0xa0, usedRing)] as [(UInt64, GuestAddress)] {
            write(register, UInt32(truncatingIfNeeded: address.rawValue))
            write(register + 4, UInt32(truncatingIfNeeded: address.rawValue >> 32))
        }
        write(0x44, 1)
        return true
    }

    func writeDescriptor(_ index: UInt16, address: GuestAddress, length: UInt32, flags: UInt16, next: UInt16, queue: Int = 0) throws {
        let base = Self.rings(queue: queue).descriptorTable + 16 * UInt64(index)
        try memory.store(address.rawValue, at: base)
        try memory.store(length, at: base + 8)
        try memory.store(flags, at: base + 12)
        try memory.store(next, at: base + 14)
    }

    /// Lays `buffers` out as one chain of fresh descriptors and returns its head.
    func addChain(_ buffers: [Buffer], queue: Int = 0) throws -> UInt16 {
        let head = queues[queue].nextDescriptor
        for (i, buffer) in buffers.enumerated() {
            let index = queues[queue].nextDescriptor
            queues[queue].nextDescriptor = (index + 1) % queues[queue].size
            let last = i == buffers.count - 1
            try writeDescriptor(
                index, address: buffer.address, length: buffer.length,
                flags: (last ? 0 : 1) | (buffer.writable ? 2 : 0), next: queues[queue].nextDescriptor, queue: queue)
        }
        return head
    }

    /// Lays `buffers` out as an indirect table at `table` and returns the one ring descriptor
    /// that points to it.
    func addIndirectChain(_ buffers: [Buffer], tableAt table: GuestAddress) throws -> UInt16 {
        for (i, buffer) in buffers.enumerated() {
            let entry = table + 16 * UInt64(i)
            let last = i == buffers.count - 1
            try memory.store(buffer.address.rawValue, at: entry)
            try memory.store(buffer.length, at: entry + 8)
            try memory.store(UInt16((last ? 0 : 1) | (buffer.writable ? 2 : 0)), at: entry + 12)
            try memory.store(UInt16(i + 1), at: entry + 14)
        }
        let head = queues[0].nextDescriptor
        queues[0].nextDescriptor = (head + 1) % queueSize
        try writeDescriptor(head, address: table, length: UInt32(16 * buffers.count), flags: 4, next: 0)
        return head
    }

    /// Puts `head` on the available ring and publishes it (without notifying).
    func publish(_ head: UInt16, queue: Int = 0) throws {
        let ring = Self.rings(queue: queue).availableRing
        let index = queues[queue].availableIndex
        try memory.store(head, at: ring + 4 + 2 * UInt64(index % queues[queue].size))
        queues[queue].availableIndex = index &+ 1
        try memory.store(index &+ 1, at: ring + 2)
    }

    func notify(queue: UInt32 = 0) { write(0x50, queue) }

    var usedIndex: UInt16 { usedIndex(queue: 0) }

    func usedIndex(queue: Int) -> UInt16 {
        (try? memory.load(UInt16.self, at: Self.rings(queue: queue).usedRing + 2)) ?? 0
    }

    func usedElement(_ position: UInt16, queue: Int = 0) throws -> (id: UInt32, length: UInt32) {
        let base = Self.rings(queue: queue).usedRing + 4 + 8 * UInt64(position % queues[queue].size)
        return (try memory.load(UInt32.self, at: base), try memory.load(UInt32.self, at: base + 4))
    }
}
