/// A device on the x86 port I/O bus. `port` is absolute; `data.count` is 1, 2 or 4.
/// Several vCPU threads may call at once, so implementations serialise their own state.
public protocol PortIODevice: AnyObject, Sendable {
    func read(port: UInt16, into data: UnsafeMutableRawBufferPointer)
    func write(port: UInt16, _ data: UnsafeRawBufferPointer)
}

/// A device in guest physical address space. `offset` is relative to the device's base.
public protocol MMIODevice: AnyObject, Sendable {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, _ data: UnsafeRawBufferPointer)
}
