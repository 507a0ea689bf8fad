/// Errors from guest memory access. A guest-supplied address that falls outside RAM is the
/// common case: devices turn it into a device error, never a host crash.
public enum GuestMemoryError: Error, Equatable, CustomStringConvertible, Sendable {
    case outOfBounds(address: UInt64, length: Int)
    case readOnly(address: UInt64)
    case badRegion(base: UInt64, size: Int)
    case overlappingRegions(UInt64)

    public var description: String {
        switch self {
        case let .outOfBounds(address, length):
            return "guest address 0x\(String(address, radix: 16)) (+\(length)) is outside guest memory"
        case let .readOnly(address):
            return "guest address 0x\(String(address, radix: 16)) is read-only"
        case let .badRegion(base, size):
            return "guest region at 0x\(String(base, radix: 16)) of \(size) bytes is not page-aligned or overflows"
        case let .overlappingRegions(base):
            return "guest regions overlap at 0x\(String(base, radix: 16))"
        }
    }
}

/// The guest's physical address space: a sorted set of non-overlapping regions.
/// Every access is bounds-checked; an access must lie within a single region.
public final class GuestMemory: @unchecked Sendable {
    // The region list is fixed at init; contents are shared with the guest.
    public let regions: [GuestRegion]

    public init(regions: [GuestRegion]) throws {
        let sorted = regions.sorted { $0.guestBase < $1.guestBase }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.guestEnd > b.guestBase {
            throw GuestMemoryError.overlappingRegions(b.guestBase)
        }
        self.regions = sorted
    }

    /// Anonymous RAM laid out as the given (base, size) ranges.
    public static func anonymous(_ layout: [(base: UInt64, size: Int)]) throws -> GuestMemory {
        try GuestMemory(regions: layout.map { try GuestRegion(anonymousAt: $0.base, size: $0.size) })
    }

    /// Total bytes of guest memory.
    public var totalSize: Int { regions.reduce(0) { $0 + $1.size } }

    public func region(containing address: UInt64, length: Int = 1) -> GuestRegion? {
        // Few regions (at most a handful): a linear scan beats anything clever.
        regions.first { $0.contains(address, length: length) }
    }

    public func contains(_ address: UInt64, length: Int) -> Bool {
        region(containing: address, length: length) != nil
    }

    /// Host pointer for [address, address+length), or throws if any byte is outside one region.
    public func pointer(at address: UInt64, length: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        guard length >= 0, let region = region(containing: address, length: max(length, 1)) else {
            throw .outOfBounds(address: address, length: length)
        }
        return region.host + Int(address - region.guestBase)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: UInt64) throws(GuestMemoryError) {
        guard buffer.count > 0 else { return }
        let p = try pointer(at: address, length: buffer.count)
        buffer.baseAddress!.copyMemory(from: p, byteCount: buffer.count)
    }

    public func readBytes(at address: UInt64, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let p = try pointer(at: address, length: count)
        return Array(UnsafeRawBufferPointer(start: p, count: count))
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at address: UInt64) throws(GuestMemoryError) {
        guard bytes.count > 0 else { return }
        guard let region = region(containing: address, length: bytes.count) else {
            throw .outOfBounds(address: address, length: bytes.count)
        }
        guard !region.isReadOnly else { throw .readOnly(address: address) }
        (region.host + Int(address - region.guestBase)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    public func write(_ bytes: [UInt8], at address: UInt64) throws(GuestMemoryError) {
        var failure: GuestMemoryError?
        bytes.withUnsafeBytes { raw in
            do throws(GuestMemoryError) { try write(raw, at: address) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Little-endian load; guest data need not be aligned.
    public func load<T: FixedWidthInteger>(_ type: T.Type, at address: UInt64) throws(GuestMemoryError) -> T {
        let p = try pointer(at: address, length: MemoryLayout<T>.size)
        return T(littleEndian: p.loadUnaligned(as: T.self))
    }

    /// Little-endian store.
    public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws(GuestMemoryError) {
        var failure: GuestMemoryError?
        withUnsafeBytes(of: value.littleEndian) { raw in
            do throws(GuestMemoryError) { try write(raw, at: address) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Zero-fills [address, address+length).
    public func zero(at address: UInt64, length: Int) throws(GuestMemoryError) {
        guard length > 0 else { return }
        guard let region = region(containing: address, length: length) else {
            throw .outOfBounds(address: address, length: length)
        }
        guard !region.isReadOnly else { throw .readOnly(address: address) }
        (region.host + Int(address - region.guestBase)).initializeMemory(as: UInt8.self, repeating: 0, count: length)
    }
}
