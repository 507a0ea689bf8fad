import CGuestMemory

/// An integer width guest memory can be accessed in as one atomic load or store: UInt8, UInt16,
/// UInt32 and UInt64, the widths `CGuestMemory` has accesses for (no other type conforms).
public protocol GuestAtomicInteger: FixedWidthInteger, UnsignedInteger, Sendable {}

extension UInt8: GuestAtomicInteger {}
extension UInt16: GuestAtomicInteger {}
extension UInt32: GuestAtomicInteger {}
extension UInt64: GuestAtomicInteger {}

/// Accesses to memory the guest changes concurrently: virtqueue rings and descriptor tables,
/// which the guest's vCPUs write while a device reads them. Each access is one atomic load or
/// store (Swift has no volatile; `CGuestMemory` has the C), so every value is read exactly once
/// and the compiler cannot re-read it after it was checked. Values are little-endian.
///
/// Like every accessor, these check bounds first; the single-access ones also refuse an address
/// that is not a multiple of the value's width (`misaligned`): an atomic access must be naturally
/// aligned, and the virtio rings' layout guarantees it for every field of a well-placed ring.
extension GuestMemory {
    /// A load with acquire ordering: what the guest wrote before it stored this value (ring
    /// entries before the available index) is read after it.
    public func loadAcquire<T: GuestAtomicInteger>(_ type: T.Type, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let source = try atomicPointer(T.self, at: address, writing: false)
        let raw: UInt64
        switch MemoryLayout<T>.size {
        case 1: raw = UInt64(rund_guest_load_acquire_8(source))
        case 2: raw = UInt64(rund_guest_load_acquire_16(source))
        case 4: raw = UInt64(rund_guest_load_acquire_32(source))
        default: raw = rund_guest_load_acquire_64(source)
        }
        return T(littleEndian: T(truncatingIfNeeded: raw))
    }

    /// A store with release ordering: what the device wrote before it (used elements) is visible
    /// to the guest before this value (the used index).
    public func storeRelease<T: GuestAtomicInteger>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let destination = try atomicPointer(T.self, at: address, writing: true)
        let raw = UInt64(truncatingIfNeeded: value.littleEndian)
        switch MemoryLayout<T>.size {
        case 1: rund_guest_store_release_8(destination, UInt8(truncatingIfNeeded: raw))
        case 2: rund_guest_store_release_16(destination, UInt16(truncatingIfNeeded: raw))
        case 4: rund_guest_store_release_32(destination, UInt32(truncatingIfNeeded: raw))
        default: rund_guest_store_release_64(destination, raw)
        }
    }

    /// A volatile (relaxed atomic) load: read once, in one access, with no ordering of its own.
    public func loadVolatile<T: GuestAtomicInteger>(_ type: T.Type, at address: GuestAddress) throws(GuestMemoryError) -> T {
        let source = try atomicPointer(T.self, at: address, writing: false)
        let raw: UInt64
        switch MemoryLayout<T>.size {
        case 1: raw = UInt64(rund_guest_load_relaxed_8(source))
        case 2: raw = UInt64(rund_guest_load_relaxed_16(source))
        case 4: raw = UInt64(rund_guest_load_relaxed_32(source))
        default: raw = rund_guest_load_relaxed_64(source)
        }
        return T(littleEndian: T(truncatingIfNeeded: raw))
    }

    /// A volatile (relaxed atomic) store: written once, in one access, with no ordering of its own.
    public func storeVolatile<T: GuestAtomicInteger>(_ value: T, at address: GuestAddress) throws(GuestMemoryError) {
        let destination = try atomicPointer(T.self, at: address, writing: true)
        let raw = UInt64(truncatingIfNeeded: value.littleEndian)
        switch MemoryLayout<T>.size {
        case 1: rund_guest_store_relaxed_8(destination, UInt8(truncatingIfNeeded: raw))
        case 2: rund_guest_store_relaxed_16(destination, UInt16(truncatingIfNeeded: raw))
        case 4: rund_guest_store_relaxed_32(destination, UInt32(truncatingIfNeeded: raw))
        default: rund_guest_store_relaxed_64(destination, raw)
        }
    }

    /// Copies [address, address+buffer.count) into host memory with volatile loads, 8 bytes at a
    /// time where aligned and byte by byte elsewhere: each guest byte is read exactly once, so a
    /// structure copied out this way (a descriptor) is checked and used as one snapshot. Any
    /// alignment is accepted.
    public func readVolatile(into buffer: UnsafeMutableRawBufferPointer, at address: GuestAddress) throws(GuestMemoryError) {
        guard buffer.count > 0 else { return }
        let source = try hostPointer(at: address, length: buffer.count)
        var offset = 0
        while offset < buffer.count {
            let from = source + offset
            if buffer.count - offset >= 8, UInt(bitPattern: from) % 8 == 0 {
                buffer.storeBytes(of: rund_guest_load_relaxed_64(from), toByteOffset: offset, as: UInt64.self)
                offset += 8
            } else {
                buffer[offset] = rund_guest_load_relaxed_8(from)
                offset += 1
            }
        }
    }

    /// The host pointer for one atomic access of a `T`: inside one region (writable ones when
    /// `writing`) and naturally aligned. Regions are page-aligned on both sides, so the guest
    /// address's alignment is the host pointer's.
    private func atomicPointer<T: GuestAtomicInteger>(
        _: T.Type, at address: GuestAddress, writing: Bool
    ) throws(GuestMemoryError) -> UnsafeMutableRawPointer {
        let width = MemoryLayout<T>.size
        guard address.isAligned(to: UInt64(width)) else { throw .misaligned(address: address, alignment: width) }
        return writing ? try writableHostPointer(at: address, length: width) : try hostPointer(at: address, length: width)
    }
}
