import Logging
import Untrusted

/// The connection state machine: every stream connection the device knows, its phase, credit
/// and buffered bytes, and the control packets owed to the guest. Guarded by the device lock
/// (`VsockCore`). Packets from the guest come in through `receive`, packets to it go out through
/// `fill`; the host end drives connections through the operations in `+HostSide` and hears
/// about them through its `VsockBackend`, which also decides which guest connections are taken.
///
/// Every container is bounded: connections by `limits.connections`, each connection's buffers by
/// the credit we advertise and `limits.outgoingBytes`, queued control packets by
/// `limits.controlPackets` (and a backend's backlog by `limits.backlog`).
struct VsockConnections {
    static let hostCID: UInt64 = 2

    let guestCID: UInt64
    let limits: VirtioVsock.Limits
    let logger: RateLimitedLogger
    /// Serves the host end; called under the device lock (see `VsockBackend`).
    let backend: any VsockBackend
    var connections: [UInt64: VsockConnection] = [:]
    var ports: [VsockConnectionKey: UInt64] = [:]
    /// Packets without payload waiting for a receive buffer, oldest first. Their credit fields
    /// are filled in when they are delivered.
    var control: [VsockHeader] = []
    var receiveQueue: Virtqueue?
    var nextID: UInt64 = 1
    var nextHostPort: UInt32 = VirtioVsock.firstEphemeralPort
    /// The connection that last sent data, so the next buffer goes to the one after it.
    var lastServed: UInt64 = 0
    /// Something was queued for the guest since the last delivery.
    var needsDelivery = false

    init(guestCID: UInt64, limits: VirtioVsock.Limits, logger: RateLimitedLogger, backend: any VsockBackend) {
        self.guestCID = guestCID
        self.limits = limits
        self.logger = logger
        self.backend = backend
    }

    // MARK: Packets from the guest

    /// Handles one packet from the transmit queue. `payload` holds exactly `header.length` bytes.
    mutating func receive(_ header: VsockHeader, payload: VsockPayload) {
        guard header.type == VsockHeader.PacketType.stream else {
            logger.debug("vsock: packet type \(header.type) refused (stream only)")
            return refuse(header)
        }
        guard VsockHeader.Operation.known.contains(header.operation) else {
            logger.debug("vsock: unknown operation \(header.operation)")
            resetConnection(for: header)
            return refuse(header)
        }
        let key = VsockConnectionKey(hostPort: header.destinationPort, guestPort: header.sourcePort)
        guard let id = ports[key] else {
            if header.operation == VsockHeader.Operation.request { return acceptRequest(header, key: key) }
            return refuse(header)
        }
        connections[id]?.peerBufferAllocation = header.bufferAllocation
        connections[id]?.peerForwarded = header.forwardCount
        switch header.operation {
        case VsockHeader.Operation.response:
            guard connections[id]?.phase == .connecting else { return violation(id, "RESPONSE on an established connection") }
            connections[id]?.phase = .established
            backend.connectionChanged(id)
        case VsockHeader.Operation.reset:
            let refused = connections[id]?.phase == .connecting
            detach(id, phase: .reset(refused: refused))
        case VsockHeader.Operation.shutdown:
            receiveShutdown(id, flags: header.flags)
        case VsockHeader.Operation.readWrite:
            receiveData(id, length: Int(header.length), payload: payload)
        case VsockHeader.Operation.creditRequest:
            queueCreditUpdate(id)
        case VsockHeader.Operation.creditUpdate:
            // The credit fields were taken above; more credit may let queued data go out.
            break
        default:
            violation(id, "REQUEST for a connection that exists")
        }
    }

    /// A guest connection to a host port: handed to the backend, or refused.
    private mutating func acceptRequest(_ header: VsockHeader, key: VsockConnectionKey) {
        guard backend.isListening(onPort: key.hostPort) else { return refuse(header) }
        guard backend.canAccept(onPort: key.hostPort), makeRoom() else {
            logger.debug("vsock: connection to host port \(key.hostPort) refused: backlog or connection limit reached")
            return refuse(header)
        }
        let id = addConnection(key: key, phase: .established)
        connections[id]?.peerBufferAllocation = header.bufferAllocation
        connections[id]?.peerForwarded = header.forwardCount
        backend.accepted(id, onPort: key.hostPort)
        queueControl(header.reply(operation: VsockHeader.Operation.response))
    }

    private mutating func receiveShutdown(_ id: UInt64, flags: UInt32) {
        guard var connection = connections[id] else { return }
        guard connection.phase == .established else { return violation(id, "SHUTDOWN before the connection was established") }
        connection.guestShutdown |= flags & VsockHeader.ShutdownFlag.both
        if connection.guestShutdown & VsockHeader.ShutdownFlag.receive != 0 { connection.outgoing.removeAll() }
        connections[id] = connection
        if connection.guestShutdown == VsockHeader.ShutdownFlag.both {
            // Linux closes a socket only once the peer answers its full shutdown with RST.
            queueControl(header(for: connection.key, operation: VsockHeader.Operation.reset))
            detach(id, phase: connection.phase)
        } else {
            backend.connectionChanged(id)
        }
    }

    private mutating func receiveData(_ id: UInt64, length: Int, payload: VsockPayload) {
        guard var connection = connections[id] else { return }
        guard connection.phase == .established, connection.guestShutdown & VsockHeader.ShutdownFlag.send == 0 else {
            return violation(id, "data on a connection that is not open for guest writes")
        }
        // The guest may count only on the forward count we already sent it (spec 5.10.6.3.1).
        let credit = limits.bufferAllocation - Int(connection.receivedTotal &- connection.advertisedForwarded)
        guard length <= credit else {
            return violation(id, "guest sent \(length) bytes with \(credit) bytes of credit")
        }
        connection.receivedTotal &+= UInt32(length)
        if connection.hostClosed || connection.hostShutdown & VsockHeader.ShutdownFlag.receive != 0 {
            // Nobody will read it: count it as consumed so the guest's credit does not run out.
            connection.forwarded &+= UInt32(length)
        } else {
            payload.append(to: &connection.received)
        }
        connections[id] = connection
        backend.connectionChanged(id)
    }

    /// The guest broke the protocol on a connection: reset it on both sides.
    private mutating func violation(_ id: UInt64, _ reason: String) {
        guard let connection = connections[id] else { return }
        logger.debug("vsock: resetting host port \(connection.key.hostPort) ↔ guest port \(connection.key.guestPort): \(reason)")
        queueControl(header(for: connection.key, operation: VsockHeader.Operation.reset))
        detach(id, phase: .reset(refused: false))
    }

    /// Resets the connection `header` names, if there is one.
    mutating func resetConnection(for header: VsockHeader) {
        let key = VsockConnectionKey(hostPort: header.destinationPort, guestPort: header.sourcePort)
        if let id = ports[key] { detach(id, phase: .reset(refused: false)) }
    }

    /// Answers a packet for no connection with RST (never an RST with an RST: no ping-pong).
    mutating func refuse(_ header: VsockHeader) {
        guard header.operation != VsockHeader.Operation.reset else { return }
        var reply = header.reply(operation: VsockHeader.Operation.reset)
        reply.type = VsockHeader.PacketType.stream
        queueControl(reply)
    }

    // MARK: Connection table

    mutating func addConnection(key: VsockConnectionKey, phase: VsockConnection.Phase) -> UInt64 {
        let id = nextID
        nextID += 1
        connections[id] = VsockConnection(id: id, key: key, phase: phase)
        ports[key] = id
        return id
    }

    /// True when a connection may be added. At the limit, the oldest connection the host closed
    /// but the guest never confirmed is reset to make room: a guest cannot pin entries forever.
    mutating func makeRoom() -> Bool {
        guard connections.count >= limits.connections else { return true }
        guard let stale = connections.values.filter({ $0.hostClosed }).min(by: { $0.id < $1.id }) else { return false }
        queueControl(header(for: stale.key, operation: VsockHeader.Operation.reset))
        if ports[stale.key] == stale.id { ports[stale.key] = nil }
        connections[stale.id] = nil
        return true
    }

    /// The guest no longer knows the connection: drop it from the port table (the ports may be
    /// reused) and drop it entirely once the host side is closed too.
    mutating func detach(_ id: UInt64, phase: VsockConnection.Phase) {
        guard var connection = connections[id] else { return }
        if connection.attached, ports[connection.key] == id { ports[connection.key] = nil }
        connection.attached = false
        connection.phase = phase
        connection.outgoing.removeAll()
        if connection.hostClosed {
            connections[id] = nil
        } else {
            connections[id] = connection
        }
        backend.connectionChanged(id)
    }

    // MARK: Control packets

    /// A header from the host side of `key` to the guest.
    func header(for key: VsockConnectionKey, operation: UInt16, flags: UInt32 = 0) -> VsockHeader {
        VsockHeader(
            sourceCID: Self.hostCID, destinationCID: guestCID, sourcePort: key.hostPort, destinationPort: key.guestPort,
            operation: operation, flags: flags)
    }

    /// Returns false when the queue is full.
    @discardableResult
    mutating func queueControl(_ header: VsockHeader) -> Bool {
        // A guest that floods us without posting receive buffers loses control packets, not memory.
        guard control.count < limits.controlPackets else {
            logger.debug("vsock: control queue full; dropping operation \(header.operation) for guest port \(header.destinationPort)")
            return false
        }
        control.append(header)
        needsDelivery = true
        return true
    }

    mutating func queueCreditUpdate(_ id: UInt64) {
        guard let connection = connections[id], connection.attached, !connection.creditUpdateQueued else { return }
        let queued = queueControl(header(for: connection.key, operation: VsockHeader.Operation.creditUpdate))
        connections[id]?.creditUpdateQueued = queued
    }
}
