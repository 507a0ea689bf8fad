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

    /// Moves up to `destination.count` bytes from the front into `destination`; returns how many.
    mutating func take(into destination: UnsafeMutableRawBufferPointer) -> Int {
        let moved = min(destination.count, count)
        guard moved > 0 else { return 0 }
        storage.withUnsafeBytes { source in
            destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<(start + moved)]))
        }
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
