import GuestMemory
import HostOS
import Logging
import Synchronization
import Untrusted

/// A virtio-net device (spec 5.1) with one receive and one transmit queue, over a
/// `NetworkBackend` (a tap). Queues move on the device's I/O thread (`VirtioNetWorker`), which
/// KVM wakes through ioeventfds, never on the notifying vCPU's thread.
///
/// The guest is hostile: every frame's header is checked and rewritten before the host kernel
/// sees it (only offloads that were negotiated pass), frames of impossible sizes are dropped
/// and counted, and a guest that posts no receive buffers only stalls its own receive path
/// (frames wait in the tap's queue, which the kernel bounds).
public final class VirtioNet: VirtioDevice {
    public static let queueSize: UInt16 = 256
    public static let receiveQueue = 0
    public static let transmitQueue = 1
    /// struct virtio_net_hdr_v1, num_buffers included: every frame has it in front.
    public static let headerLength = 12
    /// The largest frame either way: a 64 KiB segmentation-offload packet with its Ethernet and
    /// VLAN headers. A guest frame longer than this is dropped.
    public static let maxFrameLength = 65535 + 14 + 4
    static let minFrameLength = 14

    public enum Feature {
        public static let checksum: UInt64 = 1 << 0
        public static let guestChecksum: UInt64 = 1 << 1
        public static let mtu: UInt64 = 1 << 3
        public static let mac: UInt64 = 1 << 5
        public static let guestTSO4: UInt64 = 1 << 7
        public static let guestTSO6: UInt64 = 1 << 8
        public static let hostTSO4: UInt64 = 1 << 11
        public static let hostTSO6: UInt64 = 1 << 12
        public static let mergeableReceiveBuffers: UInt64 = 1 << 15
        public static let status: UInt64 = 1 << 16

        /// What `offloads` adds: checksums and TCP segmentation both ways.
        static let offloads = checksum | guestChecksum | guestTSO4 | guestTSO6 | hostTSO4 | hostTSO6
    }

    enum HeaderFlag {
        static let needsChecksum: UInt8 = 1
    }

    enum SegmentationType {
        static let none: UInt8 = 0
        static let tcpV4: UInt8 = 1
        static let tcpV6: UInt8 = 4
    }

    /// Frames and bytes each way, and frames dropped (with why, in the log).
    public struct Counters: Sendable, Equatable {
        public var receivedFrames: UInt64 = 0
        public var receivedBytes: UInt64 = 0
        public var sentFrames: UInt64 = 0
        public var sentBytes: UInt64 = 0
        public var droppedReceived: UInt64 = 0
        public var droppedSent: UInt64 = 0
    }

    public let mac: [UInt8]
    public let mtu: UInt16
    /// Checksum and segmentation offloads offered (off: plain frames of at most the MTU).
    public let offloads: Bool
    let backend: any NetworkBackend
    let logger: RateLimitedLogger
    private let negotiated = Mutex<UInt64>(0)
    private let receiving: Mutex<ReceiveState>
    private let counters = Mutex(Counters())

    /// The frame read from the backend that waits for receive buffers, and the buffer it is in.
    struct ReceiveState: ~Copyable {
        let buffer: ReceiveBuffer
        var pendingLength: Int? = nil
        /// True while a frame waits for buffers the guest has not posted: the I/O thread then
        /// stops reading the backend until the guest notifies the receive queue.
        var waitingForBuffers = false
        /// Reading the backend failed (its link went away under us, as at teardown): the I/O
        /// thread stops watching it rather than spin on an error that stays.
        var backendFailed = false
    }

    /// `mac` must be a 6-byte unicast address; `mtu` 68 to 65535.
    public init(
        backend: any NetworkBackend, mac: [UInt8], mtu: Int, offloads: Bool,
        logger: Logger = Logger(label: "rund.devices.virtio-net")
    ) throws(VirtioDeviceError) {
        guard mac.count == 6, mac[0] & 1 == 0 else { throw VirtioDeviceError("a MAC address is 6 bytes and unicast") }
        guard let mtu = UInt16(exactly: mtu), mtu >= 68 else { throw VirtioDeviceError("MTU \(mtu) is outside 68...65535") }
        self.backend = backend
        self.mac = mac
        self.mtu = mtu
        self.offloads = offloads
        self.logger = RateLimitedLogger(logger)
        receiving = Mutex(ReceiveState(buffer: ReceiveBuffer(count: Self.headerLength + Self.maxFrameLength)))
    }

    public var counterValues: Counters { counters.withLock { $0 } }

    /// Whether a frame waits for receive buffers (the I/O thread leaves the backend alone then).
    public var isWaitingForReceiveBuffers: Bool { receiving.withLock { $0.waitingForBuffers } }

    /// Whether the I/O thread should read the backend when it has frames: not while a frame
    /// waits for buffers, nor after the backend failed.
    public var wantsBackendFrames: Bool { receiving.withLock { !$0.waitingForBuffers && !$0.backendFailed } }

    public var deviceType: UInt32 { Virtio.DeviceType.network }

    public var offeredFeatures: UInt64 {
        Feature.mac | Feature.mtu | Feature.status | Feature.mergeableReceiveBuffers | (offloads ? Feature.offloads : 0)
    }

    public var queueMaxSizes: [UInt16] { [Self.queueSize, Self.queueSize] }

    /// struct virtio_net_config: mac[6], le16 status (LINK_UP), le16 max_virtqueue_pairs, le16 mtu.
    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        var config = VirtioConfigSpace(size: 12)
        for (index, byte) in mac.enumerated() { config.put(byte, at: index) }
        config.put(UInt16(1), at: 6)
        config.put(UInt16(1), at: 8)
        config.put(mtu, at: 10)
        config.read(offset: offset, into: data)
    }

    public func writeConfig(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        // The MAC is the host's to choose (VIRTIO_NET_F_MAC); nothing else is writable.
    }

    public func activate(features: UInt64, queues: [Virtqueue?]) throws(VirtioDeviceError) {
        guard queues.count > Self.transmitQueue, queues[Self.receiveQueue] != nil, queues[Self.transmitQueue] != nil else {
            throw VirtioDeviceError("the driver did not enable the receive and transmit queues")
        }
        negotiated.withLock { $0 = features }
        // The tap hands us only what the guest's driver said it accepts.
        let checksum = features & Feature.guestChecksum != 0
        do {
            try backend.acceptOffloads(
                checksum: checksum, tcpSegmentationV4: checksum && features & Feature.guestTSO4 != 0,
                tcpSegmentationV6: checksum && features & Feature.guestTSO6 != 0)
        } catch {
            throw VirtioDeviceError("the tap refused the offloads: \(error)")
        }
    }

    public func processQueue(_ queue: Virtqueue) throws(VirtqueueError) -> Bool {
        switch queue.index {
        case Self.transmitQueue: return try transmit(queue)
        case Self.receiveQueue: return try receive(into: queue)
        default: return false
        }
    }

    public func reset() {
        negotiated.withLock { $0 = 0 }
        receiving.withLock {
            $0.pendingLength = nil
            $0.waitingForBuffers = false
            $0.backendFailed = false
        }
        try? backend.acceptOffloads(checksum: false, tcpSegmentationV4: false, tcpSegmentationV6: false)
    }

    // MARK: Transmit (guest → backend)

    /// Sends every frame the driver has queued, with its notifications off meanwhile (one
    /// wake-up of the I/O thread for a burst, not one per frame), then looks again once they
    /// are back on.
    private func transmit(_ queue: Virtqueue) throws(VirtqueueError) -> Bool {
        let features = negotiated.withLock { $0 }
        var interrupt = false
        repeat {
            try queue.setNotifications(enabled: false)
            interrupt =
                try queue.processAvailable { chain throws(VirtqueueError) -> UInt32 in
                    send(chain, features: features)
                    return 0
                } || interrupt
            try queue.setNotifications(enabled: true)
        } while try queue.hasAvailable
        return interrupt
    }

    /// Sends one frame, or drops it (counted) when its header or size is not one we agreed to.
    func send(_ chain: DescriptorChain, features: UInt64) {
        let frameLength = chain.readableLength - Self.headerLength
        guard frameLength >= Self.minFrameLength, frameLength <= Self.maxFrameLength else {
            return dropSent(
                "a \(chain.readableLength)-byte transmit buffer (frames are 14 to \(Self.maxFrameLength) bytes after the header)")
        }
        var header = chain.readBytes(from: 0, count: Self.headerLength)
        if let refusal = Self.sanitize(&header, features: features, frameLength: frameLength, mtu: Int(mtu)) {
            return dropSent(refusal)
        }
        let frame = chain.readableSegments(from: Self.headerLength, count: frameLength).map { ($0.address, $0.length) }
        guard frame.count <= GuestMemory.maxGatherRanges else {
            return dropSent("a frame in \(frame.count) pieces")
        }
        do {
            try header.withUnsafeBytes { try backend.send(header: $0, frame: frame, from: chain.memory) }
            counters.withLock {
                $0.sentFrames += 1
                $0.sentBytes += UInt64(frameLength)
            }
        } catch {
            dropSent("the tap refused a frame: \(error)")
        }
    }

    /// Rewrites a guest's transmit header to what the host kernel may see: the checksum request
    /// only when CSUM was negotiated, segmentation only of a negotiated kind, nothing else.
    /// Returns why the frame must be dropped instead.
    static func sanitize(_ header: inout [UInt8], features: UInt64, frameLength: Int, mtu: Int) -> String? {
        let flags = header[0]
        let segmentation = header[1]
        if flags & HeaderFlag.needsChecksum != 0, features & Feature.checksum == 0 {
            return "a frame asks for a checksum offload that was not negotiated"
        }
        switch segmentation {
        case SegmentationType.none:
            // Without segmentation a frame fits the link: MTU plus Ethernet and VLAN headers.
            guard frameLength <= mtu + 18 else { return "a \(frameLength)-byte frame without segmentation on a \(mtu)-byte MTU link" }
        case SegmentationType.tcpV4 where features & Feature.hostTSO4 != 0 && flags & HeaderFlag.needsChecksum != 0,
            SegmentationType.tcpV6 where features & Feature.hostTSO6 != 0 && flags & HeaderFlag.needsChecksum != 0:
            break
        default:
            return "a frame asks for segmentation type \(segmentation), which was not negotiated"
        }
        header[0] = flags & HeaderFlag.needsChecksum
        header[10] = 0
        header[11] = 0
        return nil
    }

    private func dropSent(_ why: String) {
        counters.withLock { $0.droppedSent += 1 }
        logger.debug("virtio-net: transmit frame dropped: \(why)")
    }

    // MARK: Receive (backend → guest)

    /// Moves frames from the backend into the guest's receive buffers until the backend has no
    /// more or the guest has no room; a frame that does not fit stays for the next call.
    private func receive(into queue: Virtqueue) throws(VirtqueueError) -> Bool {
        let mergeable = negotiated.withLock { $0 } & Feature.mergeableReceiveBuffers != 0
        return try receiving.withLock { state throws(VirtqueueError) -> Bool in
            var interrupt = false
            state.waitingForBuffers = false
            while true {
                if state.pendingLength == nil {
                    do {
                        guard let count = try backend.receive(into: state.buffer.bytes) else { break }
                        state.pendingLength = count
                    } catch {
                        state.backendFailed = true
                        logger.warning("virtio-net: reading the tap failed, receiving stops: \(error)")
                        break
                    }
                }
                guard let length = state.pendingLength else { break }
                guard length >= Self.headerLength + Self.minFrameLength else {
                    // Nothing a guest could use: a runt from the backend.
                    state.pendingLength = nil
                    counters.withLock { $0.droppedReceived += 1 }
                    continue
                }
                let frame = UnsafeRawBufferPointer(rebasing: state.buffer.bytes[0..<length])
                var outcome = Placement.noRoom
                interrupt =
                    try queue.takeAvailable { chains throws(VirtqueueError) in
                        outcome = try Self.place(frame, into: &chains, mergeable: mergeable)
                    } || interrupt
                switch outcome {
                case .placed:
                    state.pendingLength = nil
                    counters.withLock {
                        $0.receivedFrames += 1
                        $0.receivedBytes += UInt64(length - Self.headerLength)
                    }
                case .tooLarge:
                    state.pendingLength = nil
                    counters.withLock { $0.droppedReceived += 1 }
                    logger.debug("virtio-net: a \(length)-byte received frame does not fit the guest's buffers: dropped")
                case .noRoom:
                    state.waitingForBuffers = true
                    return interrupt
                }
            }
            return interrupt
        }
    }

    enum Placement {
        case placed, noRoom, tooLarge
    }

    /// Writes one frame (header first) into the next available buffers: one chain, or with
    /// mergeable buffers as many as it takes, the count in the first header's num_buffers.
    static func place(
        _ frame: UnsafeRawBufferPointer, into chains: inout AvailableChains, mergeable: Bool
    ) throws(VirtqueueError) -> Placement {
        var written: [UInt32] = []
        var first: DescriptorChain? = nil
        var offset = 0
        while offset < frame.count {
            guard let chain = try chains.next() else { return .noRoom }
            if first == nil {
                guard chain.writableLength >= headerLength else {
                    throw .malformedRequest(
                        "virtio-net receive buffer at \(chain.head) has \(chain.writableLength) writable bytes, less than a header")
                }
                guard mergeable || chain.writableLength >= frame.count else {
                    // Without mergeable buffers a frame goes in one buffer or not at all.
                    return .tooLarge
                }
                first = chain
            }
            let count = min(chain.writableLength, frame.count - offset)
            guard count > 0 else {
                throw .malformedRequest("virtio-net receive buffer at \(chain.head) has no writable bytes")
            }
            let copied = chain.write(UnsafeRawBufferPointer(rebasing: frame[offset..<(offset + count)]), at: 0)
            offset += copied
            written.append(UInt32(copied))
            // A frame needs more buffers than the queue can ever hold: give up on it.
            if written.count >= Int(chains.queue.size), offset < frame.count { return .tooLarge }
        }
        guard let first else { return .noRoom }
        // num_buffers (le16 at 10): 1 without mergeable buffers, as the spec asks.
        let buffers = UInt16(written.count)
        first.writeBytes([UInt8(buffers & 0xff), UInt8(buffers >> 8)], at: 10)
        chains.commit(written: written)
        return .placed
    }
}

/// The host buffer one received frame waits in (64 KiB and a header), touched only under the
/// device's receive lock.
final class ReceiveBuffer: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    init(count: Int) {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
    }

    deinit {
        bytes.deallocate()
    }
}
