/// One request's buffers: the validated segments of a descriptor chain, split by direction.
/// Devices read the device-readable bytes and write the device-writable ones as two streams,
/// so they do not depend on how the driver split a request into descriptors (spec 2.7.4).
public struct DescriptorChain {
    /// A validated guest buffer: all `length` bytes lie inside one guest memory region.
    public struct Segment {
        public let address: UInt64
        let host: UnsafeMutableRawPointer
        public let length: Int
    }

    public let head: UInt16
    public private(set) var readable: [Segment] = []
    public private(set) var writable: [Segment] = []
    public private(set) var readableLength = 0
    public private(set) var writableLength = 0

    /// Walks the chain from `head`, checking every index, flag and buffer address. A chain may
    /// end in an indirect descriptor (when negotiated), whose table is walked the same way.
    init(head: UInt16, in queue: Virtqueue) throws(VirtqueueError) {
        self.head = head
        guard head < queue.size else { throw .headOutOfRange(head, size: queue.size) }
        var table = queue.descriptorTable
        var entries = Int(queue.size)
        var inIndirectTable = false
        var index = Int(head)
        var visited = 0
        var total: UInt64 = 0
        while true {
            // A chain never holds more descriptors than its table: more means a loop.
            visited += 1
            guard visited <= entries else { throw .chainTooLong(head: head) }
            let descriptor = Descriptor(index, of: table)
            if descriptor.flags & Descriptor.flagIndirect != 0 {
                guard queue.indirectDescriptors else { throw .indirectNotNegotiated(head: head) }
                guard !inIndirectTable else { throw .nestedIndirect(head: head) }
                table = try Self.indirectTable(descriptor, head: head, memory: queue)
                entries = table.length / Virtqueue.descriptorSize
                inIndirectTable = true
                index = 0
                visited = 0
                continue
            }
            let isWritable = descriptor.flags & Descriptor.flagWrite != 0
            guard isWritable || writable.isEmpty else { throw .readableAfterWritable(head: head) }
            total += UInt64(descriptor.length)
            guard total <= UInt64(UInt32.max) else { throw .chainTooLarge(head: head) }
            if descriptor.length > 0 {
                try append(descriptor, writable: isWritable, memory: queue)
            }
            guard descriptor.flags & Descriptor.flagNext != 0 else { break }
            guard Int(descriptor.next) < entries else { throw .nextOutOfRange(descriptor.next, size: UInt16(clamping: entries)) }
            index = Int(descriptor.next)
        }
    }

    /// The table an indirect descriptor points to: whole descriptors, a bounded count, in guest
    /// memory, and the last descriptor of its chain (spec 2.7.5.3).
    private static func indirectTable(_ descriptor: Descriptor, head: UInt16, memory queue: Virtqueue) throws(VirtqueueError) -> RingArea {
        let length = Int(descriptor.length)
        guard descriptor.flags & Descriptor.flagNext == 0, length > 0, length % Virtqueue.descriptorSize == 0,
            length / Virtqueue.descriptorSize <= Virtqueue.maxIndirectEntries
        else { throw .badIndirectTable(head: head, length: descriptor.length) }
        guard let host = queue.memory.readablePointer(at: descriptor.address, length: length) else {
            throw .bufferOutsideMemory(address: descriptor.address, length: descriptor.length)
        }
        return RingArea(host: host, length: length)
    }

    private mutating func append(_ descriptor: Descriptor, writable isWritable: Bool, memory queue: Virtqueue) throws(VirtqueueError) {
        let length = Int(descriptor.length)
        if isWritable {
            guard let host = queue.memory.writablePointer(at: descriptor.address, length: length) else {
                if queue.memory.readablePointer(at: descriptor.address, length: length) != nil {
                    throw .bufferReadOnly(address: descriptor.address)
                }
                throw .bufferOutsideMemory(address: descriptor.address, length: descriptor.length)
            }
            writable.append(Segment(address: descriptor.address, host: host, length: length))
            writableLength += length
        } else {
            guard let host = queue.memory.readablePointer(at: descriptor.address, length: length) else {
                throw .bufferOutsideMemory(address: descriptor.address, length: descriptor.length)
            }
            readable.append(Segment(address: descriptor.address, host: host, length: length))
            readableLength += length
        }
    }

    /// The device-readable bytes [offset, offset+count) as host buffers, in order.
    /// Callers keep the range within `readableLength`.
    public func readableSlices(from offset: Int, count: Int) -> [UnsafeRawBufferPointer] {
        Self.slices(of: readable, from: offset, count: count).map { UnsafeRawBufferPointer($0) }
    }

    /// The device-writable bytes [offset, offset+count) as host buffers, in order.
    /// Callers keep the range within `writableLength`.
    public func writableSlices(from offset: Int, count: Int) -> [UnsafeMutableRawBufferPointer] {
        Self.slices(of: writable, from: offset, count: count)
    }

    /// Copies device-readable bytes out of guest memory.
    public func readBytes(from offset: Int, count: Int) -> [UInt8] {
        readableSlices(from: offset, count: count).flatMap { Array($0) }
    }

    /// Copies bytes into the device-writable stream at `offset`; returns how many fit.
    @discardableResult
    public func writeBytes(_ bytes: [UInt8], at offset: Int) -> Int {
        var copied = 0
        for slice in writableSlices(from: offset, count: min(bytes.count, max(writableLength - offset, 0))) {
            bytes.withUnsafeBytes { source in
                slice.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[copied..<(copied + slice.count)]))
            }
            copied += slice.count
        }
        return copied
    }

    private static func slices(of segments: [Segment], from offset: Int, count: Int) -> [UnsafeMutableRawBufferPointer] {
        var result: [UnsafeMutableRawBufferPointer] = []
        var skip = max(offset, 0)
        var remaining = max(count, 0)
        for segment in segments where remaining > 0 {
            if skip >= segment.length {
                skip -= segment.length
                continue
            }
            let take = min(segment.length - skip, remaining)
            result.append(UnsafeMutableRawBufferPointer(start: segment.host + skip, count: take))
            remaining -= take
            skip = 0
        }
        return result
    }
}
