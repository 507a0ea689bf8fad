import GuestMemory

/// A driver broke the virtqueue rules. The transport answers with DEVICE_NEEDS_RESET; the
/// description is for the host log, so it names the guest values that were wrong.
public enum VirtqueueError: Error, Equatable, CustomStringConvertible, Sendable {
    case badSize(UInt16, max: UInt16)
    case misaligned(area: String, address: GuestAddress, alignment: UInt64)
    case areaOutsideMemory(area: String, address: GuestAddress, length: Int)
    case availIndexJump(lastSeen: UInt16, published: UInt16, size: UInt16)
    case headOutOfRange(UInt16, size: UInt16)
    case nextOutOfRange(UInt16, size: UInt16)
    case chainTooLong(head: UInt16)
    case indirectNotNegotiated(head: UInt16)
    case readableAfterWritable(head: UInt16)
    case badIndirectTable(head: UInt16, length: UInt32)
    case nestedIndirect(head: UInt16)
    case bufferOutsideMemory(address: GuestAddress, length: UInt32)
    case bufferReadOnly(address: GuestAddress)
    case chainTooLarge(head: UInt16)
    case malformedRequest(String)

    public var description: String {
        switch self {
        case let .badSize(size, max):
            return "queue size \(size) is not a power of 2 between 1 and \(max)"
        case let .misaligned(area, address, alignment):
            return "\(area) at \(address) is not \(alignment)-byte aligned"
        case let .areaOutsideMemory(area, address, length):
            return "\(area) at \(address) (+\(length)) is not in guest memory the device may use"
        case let .availIndexJump(lastSeen, published, size):
            return "available index jumped from \(lastSeen) to \(published), more than the queue size \(size)"
        case let .headOutOfRange(head, size):
            return "available ring names descriptor \(head) of a \(size)-entry queue"
        case let .nextOutOfRange(next, size):
            return "descriptor chain continues at \(next) of a \(size)-entry queue"
        case let .chainTooLong(head):
            return "descriptor chain at \(head) is longer than its descriptor table (a loop)"
        case let .indirectNotNegotiated(head):
            return "descriptor chain at \(head) uses indirect descriptors, which were not negotiated"
        case let .badIndirectTable(head, length):
            return
                "descriptor chain at \(head) has an indirect table of \(length) bytes (want a multiple of 16, at most \(Virtqueue.maxIndirectEntries) entries, last in the chain)"
        case let .nestedIndirect(head):
            return "descriptor chain at \(head) nests an indirect table inside another"
        case let .readableAfterWritable(head):
            return "descriptor chain at \(head) has a device-readable buffer after a device-writable one"
        case let .bufferOutsideMemory(address, length):
            return "buffer at \(address) (+\(length)) is outside guest memory"
        case let .bufferReadOnly(address):
            return "device-writable buffer at \(address) is in read-only guest memory"
        case let .chainTooLarge(head):
            return "descriptor chain at \(head) holds more than 4 GiB"
        case let .malformedRequest(reason):
            return reason
        }
    }
}
