import Logging
import Synchronization
import Untrusted

/// The vsock device's engine: guest packets (queue processing on vCPU threads), the connection
/// state machine and the host end (its backend, on any thread) meet here under one lock.
/// Nothing here blocks while holding the lock, and vCPU threads never wait for the host end:
/// full buffers push back via credit.
final class VsockCore: Sendable {
    let guestCID: UInt64
    let limits: VirtioVsock.Limits
    /// Shared with the state: the guest's packets trigger every line, so each is rate-limited.
    let logger: RateLimitedLogger
    let backend: any VsockBackend
    private let state: Mutex<VsockConnections>
    /// Processes the receive queue through the transport (so it raises the interrupt).
    private let deliverer = Mutex<(@Sendable () -> Void)?>(nil)

    init(guestCID: UInt64, limits: VirtioVsock.Limits, logger: Logger, backend: any VsockBackend) {
        self.guestCID = guestCID
        self.limits = limits
        let limited = RateLimitedLogger(logger)
        self.logger = limited
        self.backend = backend
        self.state = Mutex(VsockConnections(guestCID: guestCID, limits: limits, logger: limited, backend: backend))
    }

    /// Whether any connection exists (open, opening or closing).
    var hasConnections: Bool { state.withLock { !$0.connections.isEmpty } }

    func setDeliverer(_ deliver: @escaping @Sendable () -> Void) {
        deliverer.withLock { $0 = deliver }
    }

    /// Runs `body` under the lock, then lets the backend act on what it learned (wake host threads).
    /// Host-side callers pass `delivering`: packets they queued then go to the guest at once.
    /// Guest-side callers (inside queue processing) must not: they fill the queue themselves.
    func withState<R, E: Error>(delivering: Bool = false, _ body: (inout VsockConnections) throws(E) -> R) throws(E) -> R {
        let (result, queued) = state.withLock { state -> (Result<R, E>, Bool) in
            let result: Result<R, E>
            do throws(E) {
                result = .success(try body(&state))
            } catch {
                result = .failure(error)
            }
            let queued = state.needsDelivery
            if delivering { state.needsDelivery = false }
            return (result, queued)
        }
        backend.deviceUnlocked()
        if delivering, queued { deliver() }
        return try result.get()
    }

    /// Asks the transport to fill the guest's receive buffers with whatever is queued.
    func deliver() {
        deliverer.withLock { $0 }?()
    }

    // MARK: Guest side (vCPU threads)

    func activate(receiveQueue: Virtqueue) {
        withState { $0.receiveQueue = receiveQueue }
    }

    /// Reads one transmit-queue packet. A malformed packet is dropped or answered with RST; it
    /// never breaks the queue, which only `DescriptorChain` validation can do.
    func transmit(_ chain: DescriptorChain) {
        guard chain.readableLength >= VsockHeader.length else {
            logger.debug("vsock: dropped a \(chain.readableLength)-byte packet shorter than the header")
            return
        }
        let header = VsockHeader(decoding: chain.readBytes(from: 0, count: VsockHeader.length))
        guard header.sourceCID == guestCID, header.destinationCID == VsockConnections.hostCID else {
            logger.debug("vsock: dropped a packet from CID \(header.sourceCID) to CID \(header.destinationCID); the guest is \(guestCID)")
            return
        }
        let available = chain.readableLength - VsockHeader.length
        let payloadLength = header.operation == VsockHeader.Operation.readWrite ? Int(header.length) : 0
        guard Int(header.length) <= available, header.operation == VsockHeader.Operation.readWrite || header.length == 0 else {
            logger.debug("vsock: packet claims \(header.length) payload bytes, carries \(available), operation \(header.operation)")
            withState { state in
                state.resetConnection(for: header)
                state.refuse(header)
            }
            return
        }
        let payload = VsockPayload(chain: chain, offset: VsockHeader.length, count: payloadLength)
        withState { $0.receive(header, payload: payload) }
    }

    /// Fills the guest's receive buffers from the queued packets.
    func fillReceiveQueue(_ queue: Virtqueue) throws(VirtqueueError) -> Bool {
        try queue.processAvailable(declining: { chain throws(VirtqueueError) -> UInt32? in
            guard chain.writableLength >= VsockHeader.length else {
                throw .malformedRequest(
                    "vsock receive buffer at \(chain.head) has \(chain.writableLength) writable bytes, less than a packet header")
            }
            return withState { $0.fill(chain) }
        })
    }

    /// Fills receive buffers after transmit processing (replies, credit updates).
    func fillReceiveQueue() throws(VirtqueueError) -> Bool {
        guard let queue = withState({ $0.receiveQueue }) else { return false }
        return try fillReceiveQueue(queue)
    }

    /// The driver reset the device: every connection is reset, queued packets are forgotten.
    func reset() {
        withState { state in
            state.receiveQueue = nil
            state.control.removeAll()
            state.resetAll(tellingGuest: false)
        }
    }
}
