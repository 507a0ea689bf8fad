extension VsockConnections {
    /// Fills one receive buffer of the guest with the next packet, or returns nil (leaving the
    /// buffer for later) when nothing is waiting. Control packets go first; then data, one
    /// connection after another, never more than the guest's credit; then deferred SHUTDOWNs,
    /// which must follow the data queued before them.
    mutating func fill(_ chain: DescriptorChain) -> UInt32? {
        if !control.isEmpty {
            var packet = control.removeFirst()
            stampCredit(&packet)
            chain.writeBytes(packet.encoded, at: 0)
            return UInt32(VsockHeader.length)
        }
        let room = min(chain.writableLength - VsockHeader.length, limits.maxPacketPayload)
        for id in servingOrder() {
            guard let connection = connections[id], connection.attached, connection.phase == .established else { continue }
            if !connection.outgoing.isEmpty {
                let count = min(connection.outgoing.count, connection.peerCredit, room)
                guard count > 0 else { continue }
                return sendData(id, count: count, into: chain)
            }
            let unsent = connection.hostShutdown & ~connection.shutdownSent
            if unsent != 0 {
                connections[id]?.shutdownSent |= unsent
                var packet = header(for: connection.key, operation: VsockHeader.Operation.shutdown, flags: connection.hostShutdown)
                stampCredit(&packet)
                chain.writeBytes(packet.encoded, at: 0)
                return UInt32(VsockHeader.length)
            }
        }
        return nil
    }

    private mutating func sendData(_ id: UInt64, count: Int, into chain: DescriptorChain) -> UInt32 {
        guard var connection = connections[id] else { return 0 }
        var packet = header(for: connection.key, operation: VsockHeader.Operation.readWrite)
        packet.length = UInt32(count)
        packet.bufferAllocation = UInt32(clamping: limits.bufferAllocation)
        packet.forwardCount = connection.forwarded
        connection.advertisedForwarded = connection.forwarded
        chain.writeBytes(packet.encoded, at: 0)
        connection.outgoing.take(upTo: count) { bytes in chain.write(bytes, at: VsockHeader.length) }
        connection.sentTotal &+= UInt32(count)
        connections[id] = connection
        lastServed = id
        // Writers blocked on a full outgoing buffer have room now.
        backend.connectionChanged(id)
        return UInt32(VsockHeader.length + count)
    }

    /// Every packet we send tells the guest our buffer size and how much the host consumed.
    private mutating func stampCredit(_ packet: inout VsockHeader) {
        let key = VsockConnectionKey(hostPort: packet.sourcePort, guestPort: packet.destinationPort)
        guard let id = ports[key], let connection = connections[id] else { return }
        packet.bufferAllocation = UInt32(clamping: limits.bufferAllocation)
        packet.forwardCount = connection.forwarded
        connections[id]?.advertisedForwarded = connection.forwarded
        if packet.operation == VsockHeader.Operation.creditUpdate { connections[id]?.creditUpdateQueued = false }
    }

    /// Connection ids starting after the one served last, so one busy connection cannot starve others.
    private func servingOrder() -> [UInt64] {
        let ids = connections.keys.sorted()
        let split = ids.firstIndex { $0 > lastServed } ?? ids.endIndex
        return Array(ids[split...] + ids[..<split])
    }

    /// After the host consumed data: tell the guest once its view of our free space runs low.
    mutating func creditConsumed(_ id: UInt64) {
        guard let connection = connections[id], connection.attached, connection.phase == .established else { return }
        let guestView = limits.bufferAllocation - Int(connection.receivedTotal &- connection.advertisedForwarded)
        if guestView < limits.creditUpdateThreshold, connection.forwarded != connection.advertisedForwarded {
            queueCreditUpdate(id)
        }
    }
}
