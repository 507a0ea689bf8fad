import Testing
@testable import Devices

/// The UART's receive ring: fixed storage, FIFO order across the wrap, drops counted.
struct ByteRingTests {
    @Test func keepsOrderAcrossTheWrap() {
        var ring = ByteRing(capacity: 4)
        var popped: [UInt8] = []
        var refused = 0
        for value in UInt8(0)..<100 {
            if !ring.push(value) { refused += 1 }
            if ring.count == 3, let byte = ring.pop() { popped.append(byte) }
        }
        while let byte = ring.pop() { popped.append(byte) }
        #expect(refused == 0)
        #expect(popped == Array(0..<100))
        #expect(ring.dropped == 0)
        #expect(ring.isEmpty)
    }

    @Test func aFullRingDropsNewBytesAndCountsThem() {
        var ring = ByteRing(capacity: 3)
        let refused = ring.push(contentsOf: [1, 2, 3, 4, 5])
        #expect(refused == 2)
        #expect(ring.isFull)
        let acceptedWhenFull = ring.push(6)
        #expect(!acceptedWhenFull)
        #expect(ring.dropped == 3)
        let first = ring.pop()
        #expect(first == 1)
        let acceptedAfterPop = ring.push(7)
        #expect(acceptedAfterPop)
        let rest = [ring.pop(), ring.pop(), ring.pop(), ring.pop()]
        #expect(rest == [2, 3, 7, nil])
    }

    @Test func removeAllEmptiesWithoutForgettingDrops() {
        var ring = ByteRing(capacity: 2)
        ring.push(contentsOf: [1, 2, 3])
        ring.removeAll()
        #expect(ring.isEmpty && ring.count == 0)
        #expect(ring.dropped == 1)
        ring.push(9)
        let popped = ring.pop()
        #expect(popped == 9)
    }

    @Test func aZeroCapacityIsRaisedToOne() {
        var ring = ByteRing(capacity: 0)
        #expect(ring.capacity == 1)
        let first = ring.push(1), second = ring.push(2)
        #expect(first && !second)
    }
}
