/// Errors from guest memory access. A guest-supplied address that falls outside RAM is the
/// common case: devices turn it into a device error, never a host crash.
public enum GuestMemoryError: Error, Equatable, CustomStringConvertible, Sendable {
    case outOfBounds(address: GuestAddress, length: Int)
    case readOnly(address: GuestAddress)
    /// An access that must be one atomic load or store (`loadAcquire`, `storeRelease`, ...) at an
    /// address that is not a multiple of its width.
    case misaligned(address: GuestAddress, alignment: Int)
    /// Address arithmetic that would pass the top of the 64-bit address space.
    case addressOverflow(GuestAddress, offset: UInt64)
    case badRegion(base: GuestAddress, size: Int)
    case overlappingRegions(GuestAddress)
    /// A file could not be mapped into guest memory (`mapCopyOnWrite`); the range is unchanged.
    case fileMapping(address: GuestAddress, reason: String)

    public var description: String {
        switch self {
        case let .outOfBounds(address, length):
            return "guest address \(address) (+\(length)) is outside guest memory"
        case let .readOnly(address):
            return "guest address \(address) is read-only"
        case let .misaligned(address, alignment):
            return "guest address \(address) is not \(alignment)-byte aligned"
        case let .addressOverflow(address, offset):
            return "guest address \(address) + 0x\(String(offset, radix: 16)) overflows 64 bits"
        case let .badRegion(base, size):
            return "guest region at \(base) of \(size) bytes is not page-aligned or overflows"
        case let .overlappingRegions(base):
            return "guest regions overlap at \(base)"
        case let .fileMapping(address, reason):
            return "cannot map a file into guest memory at \(address): \(reason)"
        }
    }
}
