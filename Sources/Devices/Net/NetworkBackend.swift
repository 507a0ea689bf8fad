import GuestMemory
import HostOS

/// Where a virtio-net device's frames go and come from: today a tap in the sandbox's network
/// namespace (`TapDevice`); a vhost-net backend would take its place behind the same calls.
/// Every frame carries the 12-byte virtio-net header in front.
public protocol NetworkBackend: Sendable {
    /// Readable when a frame is waiting (the I/O thread polls it).
    var readableDescriptor: FileDescriptor { get }
    /// One frame, header first, into `buffer`; nil when none is waiting.
    func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int?
    /// One frame: `header` (host bytes, already checked) then the frame's bytes in guest memory.
    func send(header: UnsafeRawBufferPointer, frame: [(address: GuestAddress, length: Int)], from memory: GuestMemory) throws
    /// Which offloaded frames the backend may hand the guest (what the guest's driver accepts).
    func acceptOffloads(checksum: Bool, tcpSegmentationV4: Bool, tcpSegmentationV6: Bool) throws
}

extension TapDevice: NetworkBackend {
    public var readableDescriptor: FileDescriptor { file }

    public func send(header: UnsafeRawBufferPointer, frame: [(address: GuestAddress, length: Int)], from memory: GuestMemory) throws {
        _ = try memory.gatherWrite(prefix: header, ranges: frame, to: file)
    }

    public func acceptOffloads(checksum: Bool, tcpSegmentationV4: Bool, tcpSegmentationV6: Bool) throws {
        try setOffloads(checksum: checksum, tcpSegmentationV4: tcpSegmentationV4, tcpSegmentationV6: tcpSegmentationV6)
    }
}
