/// Host-side operations. Each returns a value when done, or nil plus the wakeup it registered
/// on (see `VsockCore.waitFor`).
extension VsockState {
    typealias Step<R> = (R?, VsockWakeup?)

    mutating func openConnection(guestPort: UInt32) throws(VsockError) -> UInt64 {
        guard makeRoom() else { throw .tooManyConnections(limit: limits.connections) }
        var key = VsockConnectionKey(hostPort: nextHostPort, guestPort: guestPort)
        while listeners[key.hostPort] != nil || ports[key] != nil {
            key.hostPort = key.hostPort == UInt32.max ? VirtioVsock.firstEphemeralPort : key.hostPort + 1
        }
        nextHostPort = key.hostPort == UInt32.max ? VirtioVsock.firstEphemeralPort : key.hostPort + 1
        let id = addConnection(key: key, phase: .connecting)
        queueControl(header(for: key, operation: VsockHeader.Operation.request))
        return id
    }

    mutating func awaitResponse(_ id: UInt64) throws(VsockError) -> Step<UInt64> {
        guard let connection = connections[id] else { throw .closed }
        switch connection.phase {
        case .established:
            return (id, nil)
        case .reset(let refused):
            connections[id] = nil
            throw refused ? .connectionRefused(port: connection.key.guestPort) : .connectionReset(port: connection.key.guestPort)
        case .connecting:
            connections[id]?.waiters += 1
            return (nil, connection.wakeup)
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

    mutating func read(_ id: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VsockError) -> Step<Int> {
        guard var connection = connections[id], !connection.hostClosed else { throw .closed }
        if !connection.received.isEmpty {
            let count = connection.received.take(into: buffer)
            connection.forwarded &+= UInt32(count)
            connections[id] = connection
            creditConsumed(id)
            return (count, nil)
        }
        if connection.isReset { throw .connectionReset(port: connection.key.guestPort) }
        let endOfStream = !connection.attached || connection.guestShutdown & VsockHeader.ShutdownFlag.send != 0
            || connection.hostShutdown & VsockHeader.ShutdownFlag.receive != 0
        if endOfStream || buffer.isEmpty { return (0, nil) }
        connections[id]?.waiters += 1
        return (nil, connection.wakeup)
    }

    /// Queues as much of `bytes[written...]` as the outgoing buffer takes; done when all is queued.
    mutating func write(_ id: UInt64, _ bytes: UnsafeRawBufferPointer, written: inout Int) throws(VsockError) -> Step<Void> {
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
        if written == bytes.count {
            connections[id] = connection
            return ((), nil)
        }
        connection.waiters += 1
        connections[id] = connection
        return (nil, connection.wakeup)
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
        wake(connection: id)
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
        wake(connection: id)
    }

    // MARK: Listeners

    mutating func listen(port: UInt32) throws(VsockError) -> UInt64 {
        guard listeners[port] == nil else { throw .portInUse(port) }
        let id = nextID
        nextID += 1
        listeners[port] = VsockListenerState(id: id)
        return id
    }

    mutating func accept(port: UInt32, listener id: UInt64) throws(VsockError) -> Step<UInt64> {
        guard var listener = listeners[port], listener.id == id else { throw .closed }
        if !listener.backlog.isEmpty {
            let connection = listener.backlog.removeFirst()
            listeners[port] = listener
            return (connection, nil)
        }
        listener.waiters += 1
        listeners[port] = listener
        return (nil, listener.wakeup)
    }

    /// Closes a listener; connections it had not handed out yet are reset.
    mutating func closeListener(port: UInt32, listener id: UInt64) {
        guard let listener = listeners[port], listener.id == id else { return }
        listeners[port] = nil
        for connection in listener.backlog { abandon(connection) }
        if listener.waiters > 0 { pendingWakeups.append((listener.wakeup, listener.waiters)) }
    }

    /// Resets every connection: host calls on them fail with `connectionReset` at once. Connections
    /// not yet accepted are dropped. With `tellingGuest`, the guest gets an RST for each.
    mutating func resetAll(tellingGuest: Bool) {
        for port in listeners.keys {
            for id in listeners[port]?.backlog ?? [] {
                if tellingGuest { abandon(id) } else { connections[id] = nil }
            }
            listeners[port]?.backlog.removeAll()
        }
        for (id, connection) in connections {
            if tellingGuest, connection.attached {
                queueControl(header(for: connection.key, operation: VsockHeader.Operation.reset))
            }
            detach(id, phase: .reset(refused: false))
        }
    }
}
