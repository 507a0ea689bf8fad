import Logging

/// A virtio-vsock device (spec 5.10): queues and packets here, connections in `VsockConnections`,
/// and the host end behind a `VsockBackend`. The host end lives in this process: the guest's
/// stream connections arrive at `host` (`VsockHostEndpoint`) with no socket or proxy in between.
/// Queues: 0 receive (device → guest), 1 transmit (guest → device), 2 event (TRANSPORT_RESET
/// after a restore).
/// Call `attach(to:)` once its transport exists so host writes reach the guest without waiting
/// for the guest to notify.
public final class VirtioVsock: VirtioDevice {
    public static let queueSize: UInt16 = 256
    public static let receiveQueue = 0
    public static let transmitQueue = 1
    public static let eventQueue = 2
    /// Host ports `connect` picks from, above the range listeners conventionally use.
    static let firstEphemeralPort: UInt32 = 1 << 30

    public enum Feature {
        public static let stream: UInt64 = 1 << 0
    }

    /// Bounds on what a guest (or a slow host consumer) can make the device hold.
    public struct Limits: Sendable {
        /// Receive buffer per connection, advertised to the guest as buf_alloc.
        public let bufferAllocation: Int
        /// Host-written bytes queued per connection before `write` blocks.
        public let outgoingBytes: Int
        /// Largest payload in one packet to the guest (Linux's receive buffers hold 4 KiB; the cap
        /// matters only for bigger buffers).
        public let maxPacketPayload: Int
        /// A CREDIT_UPDATE is sent once the guest's view of our free space drops below this.
        public let creditUpdateThreshold: Int
        public let connections: Int
        public let backlog: Int
        public let controlPackets: Int

        public init(
            bufferAllocation: Int = 256 << 10, outgoingBytes: Int = 256 << 10, maxPacketPayload: Int = 64 << 10,
            creditUpdateThreshold: Int = 64 << 10, connections: Int = 256, backlog: Int = 64, controlPackets: Int = 1024
        ) {
            // Clamped so no configuration can overflow the 32-bit counters or stall a writer.
            self.bufferAllocation = min(max(bufferAllocation, 1), Int(UInt32.max))
            self.outgoingBytes = max(outgoingBytes, 1)
            self.maxPacketPayload = max(maxPacketPayload, 1)
            self.creditUpdateThreshold = max(creditUpdateThreshold, 0)
            self.connections = max(connections, 0)
            self.backlog = max(backlog, 0)
            self.controlPackets = max(controlPackets, 0)
        }
    }

    public let guestCID: UInt32
    /// Where the host side listens and connects.
    public let host: VsockHostEndpoint
    let core: VsockCore

    /// `guestCID` must not be one of the reserved CIDs 0, 1, 2 or 0xffffffff.
    public init(
        guestCID: UInt32, limits: Limits = Limits(), logger: Logger = Logger(label: "rund.devices.virtio-vsock")
    ) throws(VsockError) {
        guard guestCID > 2, guestCID != UInt32.max else { throw .invalidCID(guestCID) }
        var logger = logger
        logger[metadataKey: "guest-cid"] = "\(guestCID)"
        self.guestCID = guestCID
        let backend = InProcessVsockBackend(backlog: limits.backlog)
        core = VsockCore(guestCID: UInt64(guestCID), limits: limits, logger: logger, backend: backend)
        host = VsockHostEndpoint(core: core, host: backend)
    }

    /// Lets the host side push packets: they are delivered by processing the receive queue
    /// through `transport`, which raises the interrupt. Held weakly (the transport owns us).
    public func attach(to transport: VirtioMMIOTransport) {
        core.setDeliverer { [weak transport] in transport?.notifyQueue(UInt32(Self.receiveQueue)) }
    }

    public var deviceType: UInt32 { Virtio.DeviceType.socket }
    public var offeredFeatures: UInt64 { Feature.stream }
    public var queueMaxSizes: [UInt16] { [Self.queueSize, Self.queueSize, Self.queueSize] }

    /// struct virtio_vsock_config: le64 guest_cid.
    public func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        var config = VirtioConfigSpace(size: 8)
        config.put(UInt64(guestCID), at: 0)
        config.read(offset: offset, into: data)
    }

    public func writeConfig(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        // guest_cid is read-only.
    }

    public func activate(features: UInt64, queues: [Virtqueue?]) throws(VirtioDeviceError) {
        guard let receive = queues[Self.receiveQueue], queues[Self.transmitQueue] != nil else {
            throw VirtioDeviceError("the driver did not enable the vsock receive and transmit queues")
        }
        core.activate(receiveQueue: receive)
    }

    public func processQueue(_ queue: Virtqueue) throws(VirtqueueError) -> Bool {
        switch queue.index {
        case Self.transmitQueue:
            let consumed = try queue.processAvailable { chain throws(VirtqueueError) -> UInt32 in
                core.transmit(chain)
                return 0
            }
            // Replies and credit updates the packets caused go out in the same exit.
            let delivered = try core.fillReceiveQueue()
            return consumed || delivered
        case Self.receiveQueue:
            return try core.fillReceiveQueue(queue)
        default:
            // Event buffers stay posted until a restore sends TRANSPORT_RESET (`restored`).
            return false
        }
    }

    public func reset() {
        core.reset()
    }

    /// Whether the guest has connections: a snapshot records it, so that its restore resets them.
    public var hasConnections: Bool { core.hasConnections }

    /// A restored guest's connections had their host ends in another process (or none): tells
    /// the guest with VIRTIO_VSOCK_EVENT_TRANSPORT_RESET, on which Linux fails every connected
    /// socket with ECONNRESET and rereads the CID; listening sockets (the agent's) stay.
    public func restored(queues: [Virtqueue?]) throws(VirtqueueError) -> Bool {
        guard Self.eventQueue < queues.count, let events = queues[Self.eventQueue] else { return false }
        var posted = false
        return try events.processAvailable(declining: { chain throws(VirtqueueError) -> UInt32? in
            guard !posted else { return nil }
            guard chain.writableLength >= 4 else {
                throw .malformedRequest(
                    "vsock event buffer at \(chain.head) has \(chain.writableLength) writable bytes, less than an event")
            }
            posted = true
            return UInt32(chain.writeBytes(Self.transportResetEvent, at: 0))
        })
    }

    /// struct virtio_vsock_event with id VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (0).
    static let transportResetEvent: [UInt8] = [0, 0, 0, 0]
}
