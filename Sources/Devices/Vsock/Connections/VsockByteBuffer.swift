/// A FIFO of bytes: appended at the end, consumed from the front without shifting on every read.
struct VsockByteBuffer: Sendable {
    private var storage: [UInt8] = []
    private var start = 0

    var count: Int { storage.count - start }
    var isEmpty: Bool { count == 0 }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        storage.append(contentsOf: bytes)
    }

    mutating func append(contentsOf bytes: some Collection<UInt8>) {
        storage.append(contentsOf: bytes)
    }

    /// Appends `count` bytes that `fill` writes into the room it is given; `fill` returns how many
    /// it wrote, and only those are kept.
    mutating func append(count: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Int) {
        guard count > 0 else { return }
        let end = storage.count
        storage.append(contentsOf: repeatElement(0, count: count))
        let filled = storage.withUnsafeMutableBytes { fill(UnsafeMutableRawBufferPointer(rebasing: $0[end...])) }
        storage.removeLast(count - min(max(filled, 0), count))
    }

    /// Moves up to `destination.count` bytes from the front into `destination`; returns how many.
    mutating func take(into destination: UnsafeMutableRawBufferPointer) -> Int {
        take(upTo: destination.count) { destination.copyMemory(from: $0) }
    }

    /// Hands up to `maxCount` bytes from the front to `consume` as one buffer, then drops them;
    /// returns how many.
    @discardableResult
    mutating func take(upTo maxCount: Int, _ consume: (UnsafeRawBufferPointer) -> Void) -> Int {
        let moved = min(maxCount, count)
        guard moved > 0 else { return 0 }
        storage.withUnsafeBytes { consume(UnsafeRawBufferPointer(rebasing: $0[start..<(start + moved)])) }
        start += moved
        // Compact once the consumed prefix dominates, so memory tracks what is still queued.
        if start == storage.count {
            storage.removeAll(keepingCapacity: storage.count <= 1 << 16)
            start = 0
        } else if start > 1 << 16, start * 2 > storage.count {
            storage.removeFirst(start)
            start = 0
        }
        return moved
    }

    mutating func removeAll() {
        storage = []
        start = 0
    }
}

/// The payload of one guest packet, still in the transmit chain's guest buffers: copied out
/// (through `GuestMemory`) only if a connection takes it.
struct VsockPayload {
    let chain: DescriptorChain
    /// Where the payload starts in the chain's readable bytes (after the header).
    let offset: Int
    let count: Int

    func append(to buffer: inout VsockByteBuffer) {
        buffer.append(count: count) { room in chain.read(into: room, from: offset) }
    }
}
