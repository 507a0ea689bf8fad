import Devices
import GuestMemory
import Testing

/// A hostile guest: every malformed packet is dropped or answered with RST, the device keeps
/// serving other connections, and what it holds stays bounded. Only a receive buffer that cannot
/// hold a header (a broken ring) needs a device reset.
@Suite struct VirtioVsockHostileTests {
    typealias Packet = VsockPacket

    func connected(_ guest: VsockTestGuest, port: UInt32 = 5000) throws -> VsockStream {
        let listener = try guest.host.listen(port: 1024)
        #expect(try guest.connect(from: port, to: 1024).map(\.operation) == [Packet.response])
        return try listener.accept(timeout: .seconds(5))
    }

    func data(_ bytes: [UInt8], length: UInt32? = nil) -> Packet {
        Packet(sourcePort: 5000, destinationPort: 1024, length: length, operation: Packet.readWrite, payload: bytes)
    }

    /// The connection still works after the attack.
    func expectAlive(_ guest: VsockTestGuest, _ stream: VsockStream) throws {
        try guest.send(data([0x5a]))
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [0x5a])
        #expect(!guest.driver.needsReset)
    }

    @Test func packetsShorterThanTheHeaderAreDropped() throws {
        let guest = try VsockTestGuest()
        let stream = try connected(guest)
        #expect(try guest.sendRaw([UInt8](repeating: 0xff, count: 20)))
        #expect(try guest.sendRaw([UInt8](repeating: 0, count: 43)))
        #expect(try guest.receive().isEmpty)
        try expectAlive(guest, stream)
    }

    @Test func lengthBeyondTheChainResetsTheConnection() throws {
        let guest = try VsockTestGuest()
        let stream = try connected(guest)
        try guest.send(data([1, 2, 3], length: 1000))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
        #expect(throws: VsockError.connectionReset(port: 5000)) { try stream.read(upTo: 10, timeout: .seconds(1)) }
        // A huge length and a payload on a control operation are refused the same way.
        try guest.send(data([1], length: .max))
        let request = Packet(sourcePort: 5001, destinationPort: 1024, operation: Packet.request, payload: [1, 2])
        try guest.send(request)
        #expect(try guest.receive().map(\.operation) == [Packet.reset, Packet.reset])
        #expect(!guest.driver.needsReset)
    }

    @Test func wrongCIDsAreDroppedSilently() throws {
        let guest = try VsockTestGuest()
        let stream = try connected(guest)
        for (source, destination) in [(UInt64(43), UInt64(2)), (2, 2), (42, 3), (42, 42), (UInt64(42) | 1 << 32, 2), (42, UInt64.max)] {
            var packet = data([9])
            packet.sourceCID = source
            packet.destinationCID = destination
            try guest.send(packet)
        }
        #expect(try guest.receive().isEmpty)
        #expect(throws: VsockError.timedOut(operation: "read from guest port 5000")) {
            try stream.read(upTo: 10, timeout: .milliseconds(20))
        }
        try expectAlive(guest, stream)
    }

    @Test func creditViolationResetsTheConnection() throws {
        let guest = try VsockTestGuest(limits: .init(bufferAllocation: 8 << 10))
        let stream = try connected(guest)
        try guest.send(data([UInt8](repeating: 1, count: 4096)))
        try guest.send(data([UInt8](repeating: 2, count: 4096)))
        #expect(try guest.receive().isEmpty)
        try guest.send(data([3]))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
        var total = 0
        #expect(throws: VsockError.connectionReset(port: 5000)) {
            while true { total += try stream.read(upTo: 1 << 16, timeout: .seconds(1)).count }
        }
        #expect(total == 8 << 10)
    }

    @Test func unsupportedTypesAndOperationsAreRefused() throws {
        let guest = try VsockTestGuest()
        let stream = try connected(guest)
        var seqpacket = Packet(sourcePort: 5001, destinationPort: 1024, operation: Packet.request)
        seqpacket.type = 2
        try guest.send(seqpacket)
        for operation: UInt16 in [0, 8, 0xffff] {
            try guest.send(Packet(sourcePort: 5002, destinationPort: 1024, operation: operation))
        }
        #expect(try guest.receive().map(\.operation) == [Packet.reset, Packet.reset, Packet.reset, Packet.reset])
        // An unknown operation on a live connection resets it.
        try guest.send(Packet(sourcePort: 5000, destinationPort: 1024, operation: 42))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
        #expect(throws: VsockError.connectionReset(port: 5000)) { try stream.read(upTo: 10, timeout: .seconds(1)) }
        // A RESPONSE nobody asked for, and a second REQUEST for a live connection, reset too.
        let second = try connected(guest, port: 5003)
        try guest.send(Packet(sourcePort: 5003, destinationPort: 1024, operation: Packet.response))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
        #expect(throws: VsockError.connectionReset(port: 5003)) { try second.read(upTo: 10, timeout: .seconds(1)) }
    }

    /// Anything but RESPONSE or RST to a host REQUEST resets the attempt at once.
    @Test func shutdownInsteadOfResponseFailsTheHostConnect() throws {
        let guest = try VsockTestGuest()
        let (attempt, request) = try guest.connectFromHost(to: 7000)
        try guest.send(Packet(sourcePort: 7000, destinationPort: request.sourcePort, operation: Packet.shutdown, flags: 3))
        #expect(throws: VsockError.connectionReset(port: 7000)) { try attempt.wait().get() }
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
    }

    @Test func aReceiveBufferTooSmallForAHeaderNeedsReset() throws {
        let guest = try VsockTestGuest(receiveBuffers: 4, bufferSize: 16)
        try guest.send(Packet(sourcePort: 5000, destinationPort: 1024, operation: Packet.request))
        #expect(guest.driver.needsReset)
        // The driver resets and starts over with proper buffers.
        let fresh = try VsockTestGuest()
        #expect(try fresh.connect(from: 5000, to: 1024).map(\.operation) == [Packet.reset])
    }

    /// A broken transmit ring needs a reset; the reset then fails the host's streams promptly.
    @Test func aBrokenTransmitRingNeedsResetAndTheResetEndsHostStreams() throws {
        let guest = try VsockTestGuest()
        let stream = try connected(guest)
        let head = try guest.driver.addChain(
            [.init(address: GuestAddress(1 << 40), length: 44, writable: false)], queue: VsockTestGuest.transmitQueue)
        try guest.driver.publish(head, queue: VsockTestGuest.transmitQueue)
        guest.driver.notify(queue: UInt32(VsockTestGuest.transmitQueue))
        #expect(guest.driver.needsReset)
        guest.driver.write(0x70, 0)
        #expect(throws: VsockError.connectionReset(port: 5000)) { try stream.read(upTo: 10, timeout: .seconds(1)) }
    }

    @Test func controlPacketsAreBoundedWhenTheGuestPostsNoReceiveBuffers() throws {
        let guest = try VsockTestGuest(limits: .init(controlPackets: 8), receiveBuffers: 0)
        for port in UInt32(0)..<100 {
            try guest.send(Packet(sourcePort: port, destinationPort: 1, operation: Packet.creditRequest))
        }
        for index in UInt16(0)..<32 { try guest.post(index) }
        guest.driver.notify(queue: UInt32(VsockTestGuest.receiveQueue))
        let packets = try guest.receive()
        #expect(packets.count == 8)
        #expect(packets.allSatisfy { $0.operation == Packet.reset })
        #expect(packets.map(\.destinationPort) == Array(0..<8))
    }

    @Test func hostWritesBlockAtTheOutgoingBoundWhenTheGuestReadsNothing() throws {
        let guest = try VsockTestGuest(limits: .init(outgoingBytes: 64 << 10))
        let stream = try connected(guest)
        // The guest granted 64 KiB of credit and then stops reading.
        #expect(throws: VsockError.timedOut(operation: "write to guest port 5000")) {
            try stream.write([UInt8](repeating: 7, count: 1 << 20), timeout: .milliseconds(100))
        }
        let delivered = try guest.receive()
        #expect(delivered.map(\.payload.count).reduce(0, +) == 64 << 10)
    }

    @Test func connectionAndBacklogLimitsRefuseFurtherRequests() throws {
        let guest = try VsockTestGuest(limits: .init(connections: 4, backlog: 2))
        let listener = try guest.host.listen(port: 1024)
        var answers: [UInt16] = []
        for port in UInt32(7000)..<7003 { answers += try guest.connect(from: port, to: 1024).map(\.operation) }
        #expect(answers == [Packet.response, Packet.response, Packet.reset])
        // Held: a dropped stream closes (the guest would get SHUTDOWN).
        let accepted = [try listener.accept(timeout: .seconds(1)), try listener.accept(timeout: .seconds(1))]
        var more: [UInt16] = []
        for port in UInt32(7003)..<7006 { more += try guest.connect(from: port, to: 1024).map(\.operation) }
        #expect(more == [Packet.response, Packet.response, Packet.reset])
        #expect(throws: VsockError.tooManyConnections(limit: 4)) { try guest.host.connect(guestPort: 1, timeout: .milliseconds(10)) }
        #expect(accepted.count == 2)
    }

    /// A guest that never confirms the host's close cannot pin table entries: at the limit the
    /// oldest such connection is reset to make room.
    @Test func unconfirmedClosesAreReclaimedAtTheConnectionLimit() throws {
        let guest = try VsockTestGuest(limits: .init(connections: 2))
        let listener = try guest.host.listen(port: 1024)
        var seen: [UInt16] = []
        for port in UInt32(7000)..<7002 {
            seen += try guest.connect(from: port, to: 1024).map(\.operation)
            try listener.accept(timeout: .seconds(1)).close()
        }
        seen += try guest.receive().map(\.operation)
        #expect(seen == [Packet.response, Packet.shutdown, Packet.response, Packet.shutdown])
        let answer = try guest.connect(from: 7002, to: 1024)
        #expect(answer.map(\.operation) == [Packet.reset, Packet.response])
        #expect(answer.first?.destinationPort == 7000)
    }

    /// Random headers with valid CIDs and ports near a live connection: nothing crashes, the
    /// ring never breaks, and the device answers at most one packet per packet.
    @Test func randomPacketsNeverBreakTheDevice() throws {
        let guest = try VsockTestGuest()
        let listener = try guest.host.listen(port: 1024)
        var generator = SystemRandomNumberGenerator()
        for round in 0..<2000 {
            var bytes = (0..<(44 + Int.random(in: 0..<64, using: &generator))).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if round % 2 == 0 {
                withUnsafeBytes(of: UInt64(VsockTestGuest.cid).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
                withUnsafeBytes(of: UInt64(2).littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
                withUnsafeBytes(of: UInt32(5000 + round % 3).littleEndian) { bytes.replaceSubrange(16..<20, with: $0) }
                withUnsafeBytes(of: UInt32(1024).littleEndian) { bytes.replaceSubrange(20..<24, with: $0) }
                withUnsafeBytes(of: UInt16(1).littleEndian) { bytes.replaceSubrange(28..<30, with: $0) }
                withUnsafeBytes(of: UInt16(round % 9).littleEndian) { bytes.replaceSubrange(30..<32, with: $0) }
            }
            #expect(try guest.sendRaw(bytes))
            #expect(try guest.receive().count <= 1)
        }
        #expect(!guest.driver.needsReset)
        listener.close()
    }
}
