import GuestMemory

/// One request's buffers: the validated segments of a descriptor chain, split by direction.
/// Devices read the device-readable bytes and write the device-writable ones as two streams,
/// so they do not depend on how the driver split a request into descriptors (spec 2.7.4).
/// Bytes move only through `GuestMemory`'s checked accessors; no host pointer is handed out.
public struct DescriptorChain: Sendable {
    /// A validated guest buffer: all `length` bytes lie inside one guest memory region (a
    /// writable one for device-writable segments).
    public struct Segment: Equatable, Sendable {
        public let address: GuestAddress
        public let length: Int

        /// The segment without its first `count` bytes (clamped to 0...length). The segment's end
        /// was checked to lie in guest memory, so the new start cannot overflow.
        public func dropFirst(_ count: Int) -> Segment {
            let skipped = min(max(count, 0), length)
            return Segment(address: GuestAddress(address.rawValue + UInt64(skipped)), length: length - skipped)
        }
    }

    public let head: UInt16
    let memory: GuestMemory
    public private(set) var readable: [Segment] = []
    public private(set) var writable: [Segment] = []
    public private(set) var readableLength = 0
    public private(set) var writableLength = 0

    /// A descriptor table: the queue's own, or an indirect one.
    private struct Table {
        let base: GuestAddress
        let entries: Int
        let area: String
    }

    /// Walks the chain from `head`, checking every index, flag and buffer address. A chain may
    /// end in an indirect descriptor (when negotiated), whose table is walked the same way.
    init(head: UInt16, in queue: Virtqueue) throws(VirtqueueError) {
        self.head = head
        self.memory = queue.memory
        guard head < queue.size else { throw .headOutOfRange(head, size: queue.size) }
        var table = Table(base: queue.descriptorTable, entries: Int(queue.size), area: Virtqueue.descriptorArea)
        var inIndirectTable = false
        var index = Int(head)
        var visited = 0
        var total: UInt64 = 0
        while true {
            // A chain never holds more descriptors than its table: more means a loop.
            visited += 1
            guard visited <= table.entries else { throw .chainTooLong(head: head) }
            let descriptor = try Self.descriptor(index, of: table, memory: memory)
            if descriptor.flags & Descriptor.flagIndirect != 0 {
                guard queue.indirectDescriptors else { throw .indirectNotNegotiated(head: head) }
                guard !inIndirectTable else { throw .nestedIndirect(head: head) }
                table = try Self.indirectTable(descriptor, head: head, memory: memory)
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
                try append(descriptor, writable: isWritable)
            }
            guard descriptor.flags & Descriptor.flagNext != 0 else { break }
            guard Int(descriptor.next) < table.entries else {
                throw .nextOutOfRange(descriptor.next, size: UInt16(clamping: table.entries))
            }
            index = Int(descriptor.next)
        }
    }

    /// Entry `index` (below `table.entries`) of a table that was checked to lie in guest memory.
    private static func descriptor(_ index: Int, of table: Table, memory: GuestMemory) throws(VirtqueueError) -> Descriptor {
        let offset = UInt64(Virtqueue.descriptorSize) * UInt64(truncatingIfNeeded: index)
        do throws(GuestMemoryError) {
            return try Descriptor(at: try table.base.adding(offset), in: memory)
        } catch {
            throw .areaOutsideMemory(area: table.area, address: table.base, length: table.entries * Virtqueue.descriptorSize)
        }
    }

    /// The table an indirect descriptor points to: whole descriptors, a bounded count, in guest
    /// memory, and the last descriptor of its chain (spec 2.7.5.3).
    private static func indirectTable(_ descriptor: Descriptor, head: UInt16, memory: GuestMemory) throws(VirtqueueError) -> Table {
        let length = Int(descriptor.length)
        guard descriptor.flags & Descriptor.flagNext == 0, length > 0, length % Virtqueue.descriptorSize == 0,
            length / Virtqueue.descriptorSize <= Virtqueue.maxIndirectEntries
        else { throw .badIndirectTable(head: head, length: descriptor.length) }
        do throws(GuestMemoryError) {
            try memory.checkAccess(at: descriptor.address, length: length, writing: false)
        } catch {
            throw .bufferOutsideMemory(address: descriptor.address, length: descriptor.length)
        }
        return Table(base: descriptor.address, entries: length / Virtqueue.descriptorSize, area: "indirect descriptor table")
    }

    private mutating func append(_ descriptor: Descriptor, writable isWritable: Bool) throws(VirtqueueError) {
        let length = Int(descriptor.length)
        do throws(GuestMemoryError) {
            try memory.checkAccess(at: descriptor.address, length: length, writing: isWritable)
        } catch {
            if case .readOnly = error { throw .bufferReadOnly(address: descriptor.address) }
            throw .bufferOutsideMemory(address: descriptor.address, length: descriptor.length)
        }
        let segment = Segment(address: descriptor.address, length: length)
        if isWritable {
            writable.append(segment)
            writableLength += length
        } else {
            readable.append(segment)
            readableLength += length
        }
    }

    // MARK: The two streams

    /// The guest ranges holding device-readable bytes [offset, offset+count), in order.
    /// A range past `readableLength` is cut short.
    public func readableSegments(from offset: Int, count: Int) -> [Segment] {
        Self.segments(of: readable, from: offset, count: count)
    }

    /// The guest ranges holding device-writable bytes [offset, offset+count), in order.
    /// A range past `writableLength` is cut short.
    public func writableSegments(from offset: Int, count: Int) -> [Segment] {
        Self.segments(of: writable, from: offset, count: count)
    }

    /// Copies device-readable bytes from `offset` on into `buffer`; returns how many were copied
    /// (fewer than `buffer.count` when the stream ends first).
    @discardableResult
    public func read(into buffer: UnsafeMutableRawBufferPointer, from offset: Int) -> Int {
        var copied = 0
        for segment in readableSegments(from: offset, count: buffer.count) {
            let destination = UnsafeMutableRawBufferPointer(rebasing: buffer[copied..<(copied + segment.length)])
            // The segment was checked when the chain was built and regions never change.
            guard (try? memory.read(into: destination, at: segment.address)) != nil else { break }
            copied += segment.length
        }
        return copied
    }

    /// Copies device-readable bytes out of guest memory.
    public func readBytes(from offset: Int, count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: max(count, 0))
        let copied = bytes.withUnsafeMutableBytes { read(into: $0, from: offset) }
        bytes.removeSubrange(copied...)
        return bytes
    }

    /// Copies `bytes` into the device-writable stream at `offset`; returns how many fit.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Int {
        var copied = 0
        for segment in writableSegments(from: offset, count: bytes.count) {
            let source = UnsafeRawBufferPointer(rebasing: bytes[copied..<(copied + segment.length)])
            guard (try? memory.write(source, at: segment.address)) != nil else { break }
            copied += segment.length
        }
        return copied
    }

    /// Copies bytes into the device-writable stream at `offset`; returns how many fit.
    @discardableResult
    public func writeBytes(_ bytes: [UInt8], at offset: Int) -> Int {
        bytes.withUnsafeBytes { write($0, at: offset) }
    }

    private static func segments(of segments: [Segment], from offset: Int, count: Int) -> [Segment] {
        var result: [Segment] = []
        var skip = max(offset, 0)
        var remaining = max(count, 0)
        for segment in segments where remaining > 0 {
            if skip >= segment.length {
                skip -= segment.length
                continue
            }
            let take = min(segment.length - skip, remaining)
            result.append(Segment(address: segment.dropFirst(skip).address, length: take))
            remaining -= take
            skip = 0
        }
        return result
    }
}
