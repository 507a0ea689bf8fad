import GuestMemory
import Logging
import Synchronization
import Untrusted

/// A virtio-pmem device (spec 5.19): it tells the driver where a range of guest physical memory
/// lies that the VMM maps from a host file (read-only: an image shared through the host's page
/// cache), and answers the driver's flush requests. The device never touches that range itself:
/// the VMM maps it into the guest as a read-only memory slot, outside `GuestMemory`, so no
/// descriptor can point a device at it.
public final class VirtioPmem: VirtioDevice {
    public static let queueSize: UInt16 = 64

    /// struct virtio_pmem_req's type and virtio_pmem_resp's ret (spec 5.19.6).
    enum Request {
        static let flush: UInt32 = 0
        static let length = 4
    }

    enum Response {
        static let ok: UInt32 = 0
        static let ioError: UInt32 = 1
        static let length = 4
    }

    public let start: GuestAddress
    public let size: UInt64
    private let flushes = Atomic<UInt64>(0)
    private let refused = Atomic<UInt64>(0)
    /// Every line it logs can be triggered by the guest's requests, so each is rate-limited.
    let logger: RateLimitedLogger

    /// `start` and `size` describe where the VMM put the mapping (2 MiB-aligned, as the guest's
    /// memory hotplug requires).
    public init(start: GuestAddress, size: UInt64, logger: Logger = Logger(label: "rund.devices.virtio-pmem")) {
        self.start = start
        self.size = size
        self.logger = RateLimitedLogger(logger)
    }

    /// Flush requests answered, and requests refused as malformed (what a test or a metric reads).
    public var flushCount: UInt64 { flushes.load(ordering: .relaxed) }
    public var refusedCount: UInt64 { refused.load(ordering: .relaxed) }

    public var deviceType: UInt32 { Virtio.DeviceType.pmem }
    public var offeredFeatures: UInt64 { 0 }
    public var queueMaxSizes: [UInt16] { [Self.queueSize] }

    /// struct virtio_pmem_config: le64 start, le64 size.
    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        var config = VirtioConfigSpace(size: 16)
        config.put(start.rawValue, at: 0)
        config.put(size, at: 8)
        config.read(offset: offset, into: data)
    }

    public func writeConfig(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        // Both fields are read-only.
    }

    public func activate(features: UInt64, queues: [Virtqueue?]) throws(VirtioDeviceError) {
        guard queues.first ?? nil != nil else { throw VirtioDeviceError("the driver did not enable the request queue") }
    }

    public func processQueue(_ queue: Virtqueue) throws(VirtqueueError) -> Bool {
        try queue.processAvailable { chain throws(VirtqueueError) in handle(chain) }
    }

    public func reset() {
        // No negotiated state: requests complete synchronously.
    }

    /// One request: a 4-byte type the device reads, then 4 bytes it writes. The mapping is
    /// read-only, so nothing is ever dirty and a flush has nothing to write back: it succeeds at
    /// once (cheap enough that a guest flushing in a loop costs only its own exits). A chain of
    /// another shape is used with nothing written, as the driver of a well-behaved guest never
    /// sends one.
    func handle(_ chain: DescriptorChain) -> UInt32 {
        guard chain.readableLength >= Request.length, chain.writableLength >= Response.length else {
            refused.add(1, ordering: .relaxed)
            logger.debug("virtio-pmem: request at \(chain.head) without a 4-byte type and a 4-byte response buffer")
            return 0
        }
        let typeBytes = chain.readBytes(from: 0, count: Request.length)
        guard typeBytes.count == Request.length else {
            refused.add(1, ordering: .relaxed)
            return 0
        }
        let type = typeBytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        let answer: UInt32
        if type == Request.flush {
            flushes.add(1, ordering: .relaxed)
            answer = Response.ok
        } else {
            logger.debug("virtio-pmem: unknown request type \(type)")
            answer = Response.ioError
        }
        var response = [UInt8](repeating: 0, count: Response.length)
        withUnsafeBytes(of: answer.littleEndian) { response.replaceSubrange(0..<4, with: $0) }
        return UInt32(chain.writeBytes(response, at: 0))
    }
}
