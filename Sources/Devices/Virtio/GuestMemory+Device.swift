import GuestMemory

extension GuestMemory {
    /// Host pointer for [address, address+length) if it lies in one region the device may read.
    func readablePointer(at address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        try? pointer(at: address, length: length)
    }

    /// Like `readablePointer`, but nil for read-only regions: writing there would fault the VMM.
    func writablePointer(at address: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        guard let region = region(containing: address, length: max(length, 1)), !region.isReadOnly else { return nil }
        return try? pointer(at: address, length: length)
    }
}
