/// A guest-physical address: where something lies in the guest's address space, never a host
/// pointer, a size or a register value. Arithmetic on it is checked: an offset that would carry
/// past 2^64 is reported (nil, or `overflow`), never trapped on, because guests choose most of
/// the addresses a VMM computes with.
public struct GuestAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible,
    ExpressibleByIntegerLiteral
{
    public let rawValue: UInt64

    public init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public init(_ rawValue: UInt64) {
        self.rawValue = rawValue
    }

    public init(integerLiteral value: UInt64) {
        self.rawValue = value
    }

    public static func < (lhs: GuestAddress, rhs: GuestAddress) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    /// "0x1000": how addresses read in every message and log line.
    public var description: String { "0x" + String(rawValue, radix: 16) }

    /// The address `offset` bytes on, or nil when that passes the top of the address space.
    public func checkedAdding(_ offset: UInt64) -> GuestAddress? {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return overflow ? nil : GuestAddress(sum)
    }

    /// The address `offset` bytes on, wrapped modulo 2^64, and whether it wrapped.
    public func addingReportingOverflow(_ offset: UInt64) -> (partialValue: GuestAddress, overflow: Bool) {
        let (sum, overflow) = rawValue.addingReportingOverflow(offset)
        return (GuestAddress(sum), overflow)
    }

    /// The address `offset` bytes on; throws `addressOverflow` past the top of the address space.
    public func adding(_ offset: UInt64) throws(GuestMemoryError) -> GuestAddress {
        guard let sum = checkedAdding(offset) else { throw .addressOverflow(self, offset: offset) }
        return sum
    }

    /// The address `offset` bytes before this one, or nil below 0.
    public func checkedSubtracting(_ offset: UInt64) -> GuestAddress? {
        let (difference, overflow) = rawValue.subtractingReportingOverflow(offset)
        return overflow ? nil : GuestAddress(difference)
    }

    /// How far this address lies past `base`, or nil when it lies below it.
    public func offset(from base: GuestAddress) -> UInt64? {
        let (difference, overflow) = rawValue.subtractingReportingOverflow(base.rawValue)
        return overflow ? nil : difference
    }

    /// True when the address is a multiple of `alignment`, a power of two (false for any other).
    public func isAligned(to alignment: UInt64) -> Bool {
        alignment > 0 && alignment & (alignment - 1) == 0 && rawValue & (alignment - 1) == 0
    }

    /// The lowest multiple of `alignment` (a power of two) at or above this address, or nil when
    /// there is none below 2^64 or `alignment` is not a power of two.
    public func alignedUp(to alignment: UInt64) -> GuestAddress? {
        guard alignment > 0, alignment & (alignment - 1) == 0 else { return nil }
        guard let bumped = checkedAdding(alignment - 1) else { return nil }
        return GuestAddress(bumped.rawValue & ~(alignment - 1))
    }
}
