/// A fixed-capacity FIFO of bytes: its storage is allocated once and never grows. A push into a
/// full ring drops the byte and counts it, as a UART's receive FIFO overruns.
struct ByteRing {
    let capacity: Int
    private var storage: [UInt8]
    /// Index of the oldest byte.
    private var head = 0
    private(set) var count = 0
    /// Bytes refused because the ring was full, over its whole life.
    private(set) var dropped: UInt64 = 0

    init(capacity: Int) {
        self.capacity = max(capacity, 1)
        storage = [UInt8](repeating: 0, count: self.capacity)
    }

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count == capacity }

    /// Appends `byte`; false (and counted in `dropped`) when the ring is full.
    @discardableResult
    mutating func push(_ byte: UInt8) -> Bool {
        guard count < capacity else {
            if dropped < UInt64.max { dropped += 1 }
            return false
        }
        // head < capacity and count < capacity: the sum cannot overflow.
        storage[(head + count) % capacity] = byte
        count += 1
        return true
    }

    /// Appends as many of `bytes` as fit; returns how many were dropped.
    @discardableResult
    mutating func push(contentsOf bytes: some Sequence<UInt8>) -> Int {
        var refused = 0
        for byte in bytes where !push(byte) { refused += 1 }
        return refused
    }

    /// Removes and returns the oldest byte.
    mutating func pop() -> UInt8? {
        guard count > 0 else { return nil }
        let byte = storage[head]
        head = (head + 1) % capacity
        count -= 1
        return byte
    }

    /// The bytes queued, oldest first.
    var contents: [UInt8] {
        (0..<count).map { storage[(head + $0) % capacity] }
    }

    /// Empties the ring (the storage stays).
    mutating func removeAll() {
        head = 0
        count = 0
    }
}
