import HostOS

/// File I/O straight between a host file and guest memory (virtio-blk): one pread or pwrite on
/// a checked range, so no host pointer into guest memory leaves this module.
extension GuestMemory {
    /// Reads up to `count` bytes of `file` at `offset` into [address, address+count), which
    /// must lie in one writable region. Returns the bytes read (0 at end of file).
    public func copy(fromFile file: FileDescriptor, at offset: Int64, to address: GuestAddress, count: Int) throws -> Int {
        guard count > 0 else { return 0 }
        let destination = try writableHostPointer(at: address, length: count)
        return try file.pread(into: UnsafeMutableRawBufferPointer(start: destination, count: count), at: offset)
    }

    /// Writes up to `count` bytes from [address, address+count), which must lie in one region,
    /// to `file` at `offset`. Returns the bytes written.
    public func copy(from address: GuestAddress, count: Int, toFile file: FileDescriptor, at offset: Int64) throws -> Int {
        guard count > 0 else { return 0 }
        let source = try hostPointer(at: address, length: count)
        return try file.pwrite(UnsafeRawBufferPointer(start: source, count: count), at: offset)
    }
}
