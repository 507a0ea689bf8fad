import HostOS
import Logging
import Synchronization
import Untrusted

/// A virtio-blk device (spec 5.2) over a host file descriptor: the file may be unlinked (a
/// reflinked clone) and only pread/pwrite/fsync are used. Safe to serve from several threads:
/// each queue serialises its own requests, and the medium (which a template's empty drive gets
/// later) is swapped under a lock.
public final class VirtioBlock: VirtioDevice {
    public static let sectorSize = 512
    public static let queueSize: UInt16 = 256
    /// The 20-byte serial GET_ID returns.
    public static let identifierLength = 20

    public enum Feature {
        public static let segmentMax: UInt64 = 1 << 2
        public static let readOnly: UInt64 = 1 << 5
        public static let blockSize: UInt64 = 1 << 6
        public static let flush: UInt64 = 1 << 9
    }

    public let readOnly: Bool
    let identifier: [UInt8]
    /// Every line it logs can be triggered by the guest's requests, so each is rate-limited.
    let logger: RateLimitedLogger
    /// The backing file; nil for a drive with no medium (a template's, which its clones fill).
    private let medium: Mutex<Medium?>

    /// A backing file and its capacity in 512-byte sectors (a trailing partial sector of the
    /// file is not exposed).
    struct Medium: Sendable {
        let file: FileDescriptor
        let capacity: UInt64
    }

    public convenience init(
        file: FileDescriptor, readOnly: Bool, identifier: String,
        logger: Logger = Logger(label: "rund.devices.virtio-blk")
    ) throws {
        self.init(readOnly: readOnly, identifier: identifier, medium: try Self.medium(file), logger: logger)
    }

    /// A drive with no medium: capacity 0, every read or write fails, until `insertMedium`.
    /// Its features (read-only or not) are fixed now, as the guest's driver reads them once.
    public convenience init(
        emptyReadOnly readOnly: Bool, identifier: String,
        logger: Logger = Logger(label: "rund.devices.virtio-blk")
    ) {
        self.init(readOnly: readOnly, identifier: identifier, medium: nil, logger: logger)
    }

    private init(readOnly: Bool, identifier: String, medium: Medium?, logger: Logger) {
        self.readOnly = readOnly
        self.identifier = Array(Array(identifier.utf8).prefix(Self.identifierLength))
        var logger = logger
        logger[metadataKey: "disk"] = "\(identifier)"
        self.logger = RateLimitedLogger(logger)
        self.medium = Mutex(medium)
    }

    private static func medium(_ file: FileDescriptor) throws -> Medium {
        Medium(file: file, capacity: UInt64(try file.size()) / UInt64(sectorSize))
    }

    /// Capacity in 512-byte sectors (0 without a medium).
    public var capacity: UInt64 { medium.withLock { $0?.capacity ?? 0 } }

    /// Gives the drive its backing file (a clone's own disk, in the drive its template left
    /// empty); the caller then tells the driver the config changed (`configurationChanged`).
    /// Returns the new capacity in sectors.
    @discardableResult
    public func insertMedium(_ file: FileDescriptor) throws -> UInt64 {
        let new = try Self.medium(file)
        medium.withLock { $0 = new }
        return new.capacity
    }

    /// Takes the backing file out (a pod's container removed): the drive is empty again and
    /// fails every request; the caller tells the driver (`configurationChanged`). Requests
    /// already holding the old medium finish on it.
    public func ejectMedium() {
        medium.withLock { $0 = nil }
    }

    /// The medium requests use: taken once per request, so a medium inserted meanwhile serves
    /// the next one.
    var currentMedium: Medium? { medium.withLock { $0 } }

    /// struct virtio_blk_config up to blk_size: capacity, size_max, seg_max, geometry, blk_size.
    private static func configSpace(capacity: UInt64) -> VirtioConfigSpace {
        var config = VirtioConfigSpace(size: 24)
        config.put(capacity, at: 0)
        // Header and status take two descriptors; without indirect descriptors the rest carry data.
        config.put(UInt32(queueSize) - 2, at: 12)
        config.put(UInt32(sectorSize), at: 20)
        return config
    }

    public var deviceType: UInt32 { Virtio.DeviceType.block }

    public var offeredFeatures: UInt64 {
        Feature.segmentMax | Feature.blockSize | Feature.flush | (readOnly ? Feature.readOnly : 0)
    }

    public var queueMaxSizes: [UInt16] { [Self.queueSize] }

    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        Self.configSpace(capacity: capacity).read(offset: offset, into: data)
    }

    public func writeConfig(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        // Every field we expose is read-only (no CONFIG_WCE).
    }

    public func activate(features: UInt64, queues: [Virtqueue?]) throws(VirtioDeviceError) {
        guard queues.first ?? nil != nil else { throw VirtioDeviceError("the driver did not enable the request queue") }
    }

    public func processQueue(_ queue: Virtqueue) throws(VirtqueueError) -> Bool {
        try queue.processAvailable { chain throws(VirtqueueError) in try handle(chain) }
    }

    public func reset() {
        // No negotiated state to forget: requests complete synchronously.
    }
}
