/// The operations the host end drives a connection with. Each does what it can at once; the
/// ones that may have to wait return nil instead of a value, and the backend decides how to wait
/// for `VsockBackend.connectionChanged` (the in-process endpoint blocks the calling thread).
extension VsockConnections {
    mutating func openConnection(guestPort: UInt32) throws(VsockError) -> UInt64 {
        guard makeRoom() else { throw .tooManyConnections(limit: limits.connections) }
        var key = VsockConnectionKey(hostPort: nextHostPort, guestPort: guestPort)
        while backend.isListening(onPort: key.hostPort) || ports[key] != nil {
            key.hostPort = key.hostPort == UInt32.max ? VirtioVsock.firstEphemeralPort : key.hostPort + 1
        }
        nextHostPort = key.hostPort == UInt32.max ? VirtioVsock.firstEphemeralPort : key.hostPort + 1
        let id = addConnection(key: key, phase: .connecting)
        queueControl(header(for: key, operation: VsockHeader.Operation.request))
        return id
    }

    /// `id` once the guest answered the host's REQUEST; nil while it has not.
    mutating func awaitResponse(_ id: UInt64) throws(VsockError) -> UInt64? {
        guard let connection = connections[id] else { throw .closed }
        switch connection.phase {
        case .established:
            return id
        case .reset(let refused):
            connections[id] = nil
            throw refused ? .connectionRefused(port: connection.key.guestPort) : .connectionReset(port: connection.key.guestPort)
        case .connecting:
            return nil
        }
    }

    /// Gives up a connection: the guest is told with RST, the entry is dropped. A REQUEST the
    /// guest never received is simply withdrawn (the driver may not be up yet).
    mutating func abandon(_ id: UInt64) {
        guard var connection = connections[id] else { return }
        let undelivered = control.firstIndex {
            $0.operation == VsockHeader.Operation.request && $0.sourcePort == connection.key.hostPort
                && $0.destinationPort == connection.key.guestPort
        }
        if let undelivered {
            control.remove(at: undelivered)
        } else if connection.attached {
            queueControl(header(for: connection.key, operation: VsockHeader.Operation.reset))
        }
        connection.hostClosed = true
        connections[id] = connection
        detach(id, phase: .reset(refused: false))
    }

    /// Moves bytes the guest sent into `buffer`: their count, 0 at end of stream, nil while
    /// nothing is there yet.
    mutating func read(_ id: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VsockError) -> Int? {
        guard var connection = connections[id], !connection.hostClosed else { throw .closed }
        if !connection.received.isEmpty {
            let count = connection.received.take(into: buffer)
            connection.forwarded &+= UInt32(count)
            connections[id] = connection
            creditConsumed(id)
            return count
        }
        if connection.isReset { throw .connectionReset(port: connection.key.guestPort) }
        let endOfStream =
            !connection.attached || connection.guestShutdown & VsockHeader.ShutdownFlag.send != 0
            || connection.hostShutdown & VsockHeader.ShutdownFlag.receive != 0
        if endOfStream || buffer.isEmpty { return 0 }
        return nil
    }

    /// Queues as much of `bytes[written...]` as the outgoing buffer takes; true once all is queued.
    mutating func write(_ id: UInt64, _ bytes: UnsafeRawBufferPointer, written: inout Int) throws(VsockError) -> Bool {
        guard var connection = connections[id], !connection.hostClosed else { throw .closed }
        if connection.isReset { throw .connectionReset(port: connection.key.guestPort) }
        guard connection.attached, connection.guestShutdown & VsockHeader.ShutdownFlag.receive == 0,
            connection.hostShutdown & VsockHeader.ShutdownFlag.send == 0
        else { throw .brokenPipe(port: connection.key.guestPort) }
        let count = min(limits.outgoingBytes - connection.outgoing.count, bytes.count - written)
        if count > 0 {
            connection.outgoing.append(UnsafeRawBufferPointer(rebasing: bytes[written..<(written + count)]))
            written += count
            needsDelivery = true
        }
        connections[id] = connection
        return written == bytes.count
    }

    mutating func shutdown(_ id: UInt64, flags: UInt32) {
        guard var connection = connections[id], !connection.hostClosed else { return }
        connection.hostShutdown |= flags
        if flags & VsockHeader.ShutdownFlag.receive != 0 {
            connection.forwarded &+= UInt32(connection.received.count)
            connection.received.removeAll()
        }
        connections[id] = connection
        needsDelivery = true
        backend.connectionChanged(id)
    }

    /// The host is done with the stream. The guest gets SHUTDOWN after any queued data, and the
    /// entry goes once it answers (RST or its own full shutdown).
    mutating func close(_ id: UInt64) {
        guard var connection = connections[id], !connection.hostClosed else { return }
        guard connection.attached else {
            connections[id] = nil
            return
        }
        guard connection.phase == .established else { return abandon(id) }
        connection.hostClosed = true
        connection.hostShutdown = VsockHeader.ShutdownFlag.both
        connection.forwarded &+= UInt32(connection.received.count)
        connection.received.removeAll()
        connections[id] = connection
        needsDelivery = true
        backend.connectionChanged(id)
    }

    /// Resets every connection: host calls on them fail with `connectionReset` at once. Connections
    /// the backend took but never picked up are dropped. With `tellingGuest`, the guest gets an RST
    /// for each.
    mutating func resetAll(tellingGuest: Bool) {
        for id in backend.takeUnclaimedConnections() {
            if tellingGuest { abandon(id) } else { connections[id] = nil }
        }
        for (id, connection) in connections {
            if tellingGuest, connection.attached {
                queueControl(header(for: connection.key, operation: VsockHeader.Operation.reset))
            }
            detach(id, phase: .reset(refused: false))
        }
    }
}
