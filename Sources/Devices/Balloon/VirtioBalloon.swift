import GuestMemory
import Logging
import Synchronization
import Untrusted

/// A virtio-balloon device (spec 5.5) that takes memory back from the guest two ways:
/// - **free page reporting** (VIRTIO_BALLOON_F_PAGE_REPORTING): the guest's kernel hands over
///   runs of free pages (2 MiB and up) on the reporting queue, and the device discards them
///   (`GuestMemory.discard`) until the guest uses them again;
/// - **inflation**: the host sets a target (`setTarget`), the guest's driver gives that many
///   4 KiB pages on the inflate queue and takes them back on the deflate queue (also on its own
///   when it runs out of memory: DEFLATE_ON_OOM).
/// Every address is the guest's: ranges outside RAM or not page-aligned are skipped and counted,
/// and a chain that is malformed as a chain needs a reset, like any device's.
public final class VirtioBalloon: VirtioDevice {
    public static let queueSize: UInt16 = 128
    /// Inflate and deflate carry le32 page frame numbers of 4 KiB pages.
    static let balloonPageSize: UInt64 = 4096
    /// Linux sends at most 256 PFNs a chain; more is not a driver we know.
    static let maxPFNsPerChain = 256

    public enum Feature {
        public static let deflateOnOOM: UInt64 = 1 << 2
        public static let pageReporting: UInt64 = 1 << 5
    }

    /// Queue indices as the driver numbers them when it negotiated page reporting and no other
    /// optional queue (stats, free page hinting): absent queues take no index.
    enum Queue {
        static let inflate = 0
        static let deflate = 1
        static let reporting = 2
    }

    let memory: GuestMemory
    let logger: RateLimitedLogger
    private let state = Mutex(State())
    private let discardedBytes = Atomic<UInt64>(0)
    private let skippedRanges = Atomic<UInt64>(0)
    private let interrupt: Mutex<(@Sendable () -> Void)?> = Mutex(nil)

    struct State {
        var features: UInt64 = 0
        var queues: [Virtqueue?] = []
        /// num_pages: how many 4 KiB pages the host wants in the balloon.
        var target: UInt32 = 0
        /// actual: how many the guest says it has given (untrusted: a report, not a measure).
        var actual: UInt32 = 0
    }

    public init(memory: GuestMemory, logger: Logger = Logger(label: "rund.devices.virtio-balloon")) {
        self.memory = memory
        self.logger = RateLimitedLogger(logger)
    }

    /// Bytes given back to the host so far, and reported ranges refused (outside RAM, misaligned).
    public var discardedByteCount: UInt64 { discardedBytes.load(ordering: .relaxed) }
    public var skippedRangeCount: UInt64 { skippedRanges.load(ordering: .relaxed) }
    /// The guest's own count of pages in the balloon.
    public var reportedBalloonPages: UInt32 { state.withLock { $0.actual } }

    /// Called (by the VMM) to raise the configuration-change interrupt after `setTarget`.
    public func onConfigurationChange(_ raise: @escaping @Sendable () -> Void) {
        interrupt.withLock { $0 = raise }
    }

    /// Asks the guest to give `pages` 4 KiB pages (at most its RAM) into the balloon, or back.
    public func setTarget(pages: UInt32) {
        state.withLock { $0.target = min(pages, pageLimit) }
        interrupt.withLock { $0 }?()
    }

    /// The guest's RAM in balloon pages: no target is more.
    var pageLimit: UInt32 { UInt32(clamping: UInt64(memory.totalSize) / Self.balloonPageSize) }

    /// What a snapshot keeps of the device beyond its transport: `num_pages` and `actual`.
    public var savedPages: (target: UInt32, actual: UInt32) { state.withLock { ($0.target, $0.actual) } }

    /// Takes a snapshot's `num_pages` and `actual` (a restored machine's, before it runs);
    /// a target larger than the guest's RAM is refused and changes nothing.
    public func restorePages(target: UInt32, actual: UInt32) throws(VirtioDeviceError) {
        guard target <= pageLimit else {
            throw VirtioDeviceError("a balloon target of \(target) pages is more than the guest's \(pageLimit)")
        }
        state.withLock {
            $0.target = target
            $0.actual = actual
        }
    }

    public var deviceType: UInt32 { Virtio.DeviceType.balloon }
    public var offeredFeatures: UInt64 { Feature.deflateOnOOM | Feature.pageReporting }
    public var queueMaxSizes: [UInt16] { [Self.queueSize, Self.queueSize, Self.queueSize] }

    /// struct virtio_balloon_config: le32 num_pages, le32 actual (the guest writes it), then
    /// free_page_hint_cmd_id and poison_val (unused: 0).
    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let (target, actual) = state.withLock { ($0.target, $0.actual) }
        var config = VirtioConfigSpace(size: 16)
        config.put(target, at: 0)
        config.put(actual, at: 4)
        config.read(offset: offset, into: data)
    }

    /// Only `actual` is the driver's to write, as one aligned 32-bit store.
    public func writeConfig(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        guard offset == 4, data.count == 4 else { return }
        let value = UInt32(littleEndian: data.loadUnaligned(as: UInt32.self))
        state.withLock { $0.actual = value }
    }

    public func activate(features: UInt64, queues: [Virtqueue?]) throws(VirtioDeviceError) {
        guard queues.count > Queue.deflate, queues[Queue.inflate] != nil, queues[Queue.deflate] != nil else {
            throw VirtioDeviceError("the driver did not enable the inflate and deflate queues")
        }
        state.withLock {
            $0.features = features
            $0.queues = queues
        }
    }

    public func processQueue(_ queue: Virtqueue) throws(VirtqueueError) -> Bool {
        let (features, queues) = state.withLock { ($0.features, $0.queues) }
        let index = queues.firstIndex { $0 === queue }
        switch index {
        case Queue.inflate:
            return try queue.processAvailable { chain throws(VirtqueueError) in inflate(chain) }
        case Queue.reporting where features & Feature.pageReporting != 0:
            return try queue.processAvailable { chain throws(VirtqueueError) in report(chain) }
        default:
            // Deflated pages need nothing from the host: the guest's next touch faults them in.
            return try queue.processAvailable { _ throws(VirtqueueError) in 0 }
        }
    }

    public func reset() {
        state.withLock {
            $0.features = 0
            $0.queues = []
            $0.actual = 0
        }
    }

    /// A chain of le32 PFNs: each 4 KiB page is discarded (runs of adjacent PFNs at once).
    func inflate(_ chain: DescriptorChain) -> UInt32 {
        let count = min(chain.readableLength / 4, Self.maxPFNsPerChain)
        if chain.readableLength % 4 != 0 || chain.readableLength / 4 > Self.maxPFNsPerChain {
            logger.debug("virtio-balloon: inflate chain of \(chain.readableLength) bytes: only \(count) whole PFNs taken")
        }
        let bytes = chain.readBytes(from: 0, count: count * 4)
        var pfns: Set<UInt64> = []
        for i in 0..<(bytes.count / 4) {
            pfns.insert(UInt64(bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) }))
        }
        // Runs of adjacent pages, each discarded at once.
        var run: (start: UInt64, pages: UInt64)? = nil
        for pfn in pfns.sorted() {
            if let current = run, pfn == current.start + current.pages {
                run = (current.start, current.pages + 1)
                continue
            }
            if let current = run { discard(current.start * Self.balloonPageSize, bytes: current.pages * Self.balloonPageSize) }
            run = (pfn, 1)
        }
        if let current = run { discard(current.start * Self.balloonPageSize, bytes: current.pages * Self.balloonPageSize) }
        return 0
    }

    /// A chain of device-writable buffers, each a run of free guest pages: discarded. The device
    /// writes nothing into them.
    func report(_ chain: DescriptorChain) -> UInt32 {
        for segment in chain.writable {
            discard(segment.address.rawValue, bytes: UInt64(segment.length))
        }
        return 0
    }

    private func discard(_ start: UInt64, bytes: UInt64) {
        guard let length = Int(exactly: bytes) else {
            skippedRanges.add(1, ordering: .relaxed)
            return
        }
        do throws(GuestMemoryError) {
            try memory.discard(at: GuestAddress(start), length: length)
            discardedBytes.add(bytes, ordering: .relaxed)
        } catch {
            skippedRanges.add(1, ordering: .relaxed)
            logger.debug("virtio-balloon: range not given back: \(error)")
        }
    }
}
