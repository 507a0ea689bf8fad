/// The guest's physical address space: a sorted set of non-overlapping regions.
/// Every access is bounds-checked; an access must lie within a single region. No host pointer
/// into guest memory leaves this module except to register the regions with the hypervisor
/// (`hypervisorMappings`).
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

    /// Anonymous RAM laid out as the given (base, size) ranges; `smallPages`: never in
    /// transparent huge pages (`GuestRegion`).
    public static func anonymous(_ layout: [(base: GuestAddress, size: Int)], smallPages: Bool = false) throws -> GuestMemory {
        try GuestMemory(regions: layout.map { try GuestRegion(anonymousAt: $0.base, size: $0.size, smallPages: smallPages) })
    }

    /// Total bytes of guest memory.
    public var totalSize: Int { regions.reduce(0) { $0 + $1.size } }

    public func region(containing address: GuestAddress, length: Int = 1) -> GuestRegion? {
        // Few regions (at most a handful): a linear scan beats anything clever.
        regions.first { $0.contains(address, length: length) }
    }

    public func contains(_ address: GuestAddress, length: Int) -> Bool {
        region(containing: address, length: length) != nil
    }

    /// Throws unless [address, address+length) lies in one region, and in writable memory when
    /// `writing`: for checking a guest buffer once before it is used.
    public func checkAccess(at address: GuestAddress, length: Int, writing: Bool) throws(GuestMemoryError) {
        if writing {
            _ = try writableHostPointer(at: address, length: length)
        } else {
            _ = try hostPointer(at: address, length: length)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at address: GuestAddress) throws(GuestMemoryError) {
        guard let destination = buffer.baseAddress, buffer.count > 0 else { return }
        let source = try hostPointer(at: address, length: buffer.count)
        destination.copyMemory(from: source, byteCount: buffer.count)
    }

    public func readBytes(at address: GuestAddress, count: Int) throws(GuestMemoryError) -> [UInt8] {
        let source = try hostPointer(at: address, length: count)
        return Array(UnsafeRawBufferPointer(start: source, count: count))
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at address: GuestAddress) throws(GuestMemoryError) {
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        let destination = try writableHostPointer(at: address, length: bytes.count)
        destination.copyMemory(from: source, byteCount: bytes.count)
    }

    public func write(_ bytes: [UInt8], at address: GuestAddress) throws(GuestMemoryError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(GuestMemoryError) in try write(raw, at: address) } }.get()
    }

    /// Little-endian load; guest data need not be aligned. For memory the guest does not change
    /// while it is read (boot data, a device's own buffers); rings use `loadAcquire`/`loadVolatile`.
    public func load<T: FixedWidthInteger>(_ type: T.Type, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let source = try hostPointer(at: address, length: MemoryLayout<T>.size)
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    /// Little-endian store.
    public func store<T: FixedWidthInteger>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        try withUnsafeBytes(of: value.littleEndian) { raw throws(GuestMemoryError) in try write(raw, at: address) }
    }

    /// Zero-fills [address, address+length).
    public func zero(at address: GuestAddress, length: Int) throws(GuestMemoryError) {
        guard length > 0 else { return }
        let destination = try writableHostPointer(at: address, length: length)
        destination.initializeMemory(as: UInt8.self, repeating: 0, count: length)
    }

    // MARK: Host pointers (this module only)

    /// Host pointer for [address, address+length), or throws if any byte is outside one region.
    /// An empty range must still start inside a region.
    func hostPointer(at address: GuestAddress, length: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        try locate(address, length: length).pointer
    }

    /// Like `hostPointer`, but refuses read-only regions: writing there would fault the VMM.
    func writableHostPointer(at address: GuestAddress, length: Int) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        try locateWritable(address, length: length).pointer
    }

    func locateWritable(
        _ address: GuestAddress, length: Int
    ) throws(GuestMemoryError) -> (region: GuestRegion, pointer: UnsafeMutableRawPointer) {
        let (region, pointer) = try locate(address, length: length)
        guard !region.isReadOnly else { throw .readOnly(address: address) }
        return (region, pointer)
    }

    private func locate(
        _ address: GuestAddress, length: Int
    ) throws(GuestMemoryError) -> (region: GuestRegion, pointer: UnsafeMutableRawPointer) {
        guard length >= 0, let region = region(containing: address, length: max(length, 1)),
            let offset = address.offset(from: region.guestBase), let index = Int(exactly: offset)
        else { throw .outOfBounds(address: address, length: length) }
        return (region, region.host + index)
    }
}
