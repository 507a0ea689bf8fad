import Testing
import GuestMemory

/// `GuestAddress` arithmetic never traps: every way past either end of the 64-bit space is
/// reported (nil, `overflow`, or `addressOverflow`).
@Suite struct GuestAddressTests {
    static let top = GuestAddress(UInt64.max)

    @Test func addingReportsOverflowInsteadOfTrapping() throws {
        #expect(GuestAddress(0x1000).checkedAdding(0x10) == GuestAddress(0x1010))
        #expect(GuestAddress(UInt64.max - 1).checkedAdding(1) == Self.top)
        #expect(GuestAddress(UInt64.max - 1).checkedAdding(2) == nil)
        #expect(Self.top.checkedAdding(UInt64.max) == nil)
        #expect(Self.top.checkedAdding(0) == Self.top)

        let wrapped = GuestAddress(UInt64.max - 1).addingReportingOverflow(3)
        #expect(wrapped.overflow && wrapped.partialValue == GuestAddress(1))
        let plain = GuestAddress(8).addingReportingOverflow(8)
        #expect(!plain.overflow && plain.partialValue == GuestAddress(16))

        #expect(try GuestAddress(0x500).adding(8) == GuestAddress(0x508))
        #expect(throws: GuestMemoryError.addressOverflow(Self.top, offset: 1)) { try Self.top.adding(1) }
    }

    @Test func subtractingAndOffsetsReportUnderflow() {
        #expect(GuestAddress(0x1000).checkedSubtracting(0x1000) == GuestAddress(0))
        #expect(GuestAddress(0x1000).checkedSubtracting(0x1001) == nil)
        #expect(GuestAddress(0).checkedSubtracting(1) == nil)
        #expect(GuestAddress(0x3000).offset(from: GuestAddress(0x1000)) == 0x2000)
        #expect(GuestAddress(0x1000).offset(from: GuestAddress(0x1000)) == 0)
        #expect(GuestAddress(0x1000).offset(from: GuestAddress(0x1001)) == nil)
        #expect(Self.top.offset(from: GuestAddress(0)) == UInt64.max)
    }

    @Test func alignment() {
        #expect(GuestAddress(0x1000).isAligned(to: 16))
        #expect(GuestAddress(0x1008).isAligned(to: 8))
        #expect(!GuestAddress(0x1008).isAligned(to: 16))
        #expect(GuestAddress(0x1001).isAligned(to: 1))
        // Only powers of two are alignments; anything else is never satisfied.
        #expect(!GuestAddress(0x1000).isAligned(to: 0))
        #expect(!GuestAddress(24).isAligned(to: 12))

        #expect(GuestAddress(0x1001).alignedUp(to: 16) == GuestAddress(0x1010))
        #expect(GuestAddress(0x1010).alignedUp(to: 16) == GuestAddress(0x1010))
        #expect(GuestAddress(UInt64.max - 3).alignedUp(to: 16) == nil)
        #expect(GuestAddress(5).alignedUp(to: 0) == nil)
        #expect(GuestAddress(5).alignedUp(to: 3) == nil)
    }

    @Test func comparesAndPrintsInHex() {
        #expect(GuestAddress(1) < GuestAddress(2))
        #expect(GuestAddress(0xd000_0000) > GuestAddress(0xc000_0000))
        #expect(GuestAddress(0x1000) == 0x1000)
        #expect(GuestAddress(rawValue: 42).rawValue == 42)
        #expect(GuestAddress(0xd100_0000).description == "0xd1000000")
        #expect("\(GuestAddress(0))" == "0x0")
        #expect(Set([GuestAddress(1), GuestAddress(1), GuestAddress(2)]).count == 2)
    }

    @Test func errorsNameTheAddressInHex() {
        #expect(
            GuestMemoryError.outOfBounds(address: 0x1_0000_0000, length: 8).description
                == "guest address 0x100000000 (+8) is outside guest memory")
        #expect(
            GuestMemoryError.misaligned(address: 0x1003, alignment: 4).description
                == "guest address 0x1003 is not 4-byte aligned")
        #expect(
            GuestMemoryError.addressOverflow(Self.top, offset: 0x10).description
                == "guest address 0xffffffffffffffff + 0x10 overflows 64 bits")
    }
}
