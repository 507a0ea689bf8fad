import Devices
import Dispatch
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Credit-based flow control with transfers larger than every buffer on the way.
@Suite struct VirtioVsockFlowTests {
    typealias Packet = VsockPacket

    static func pattern(_ count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 * 31 + $0 / 251 + seed) }
    }

    /// The guest receives `count` bytes on each of `ports` (guest port → host port), granting
    /// credit only for what it consumed, and checks the device never exceeds it.
    func receiveAsGuest(_ guest: VsockTestGuest, ports: [UInt32: UInt32], count: Int, guestBuffer: UInt32) throws -> [UInt32: [UInt8]] {
        var received: [UInt32: [UInt8]] = [:]
        var advertised: [UInt32: Int] = [:]
        let deadline = DispatchTime.now() + 30
        while received.values.map(\.count).reduce(0, +) < count * ports.count, DispatchTime.now() < deadline {
            let packets = try guest.receive()
            for packet in packets {
                #expect(packet.operation == Packet.readWrite, "\(packet)")
                let port = packet.destinationPort
                received[port, default: []] += packet.payload
                let inFlight = received[port, default: []].count - advertised[port, default: 0]
                #expect(inFlight <= Int(guestBuffer), "device sent \(inFlight) bytes on credit \(guestBuffer)")
            }
            guard packets.isEmpty else { continue }
            // The guest application consumed everything: tell the device.
            var granted = false
            for (port, bytes) in received where bytes.count > advertised[port, default: 0] {
                advertised[port] = bytes.count
                try guest.send(
                    Packet(
                        sourcePort: port, destinationPort: ports[port]!, operation: Packet.creditUpdate,
                        bufferAllocation: guestBuffer, forwardCount: UInt32(truncatingIfNeeded: bytes.count)))
                granted = true
            }
            if !granted { usleep(200) }
        }
        return received
    }

    @Test func hostToGuestTransferLargerThanEveryBufferRespectsGuestCredit() throws {
        let guest = try VsockTestGuest()
        let listener = try guest.host.listen(port: 1024)
        let guestBuffer: UInt32 = 16 << 10
        #expect(try guest.connect(from: 5000, to: 1024, bufferAllocation: guestBuffer).map(\.operation) == [Packet.response])
        let stream = try listener.accept(timeout: .seconds(5))
        let payload = Self.pattern(1 << 20, seed: 1)
        let writer = HostResult.start { () throws(VsockError) in
            try stream.write(payload, timeout: .seconds(30))
            return true
        }
        let received = try receiveAsGuest(guest, ports: [5000: 1024], count: payload.count, guestBuffer: guestBuffer)
        #expect(received[5000] == payload)
        #expect(try writer.wait().get())
        #expect(!guest.driver.needsReset)
    }

    @Test func guestToHostTransferLargerThanOurBufferGetsCreditUpdates() throws {
        let limits = VirtioVsock.Limits(bufferAllocation: 32 << 10, creditUpdateThreshold: 8 << 10)
        let guest = try VsockTestGuest(limits: limits)
        let listener = try guest.host.listen(port: 1024)
        let answer = try guest.connect(from: 5000, to: 1024)
        var peerBuffer = Int(try #require(answer.first).bufferAllocation)
        #expect(peerBuffer == 32 << 10)
        var peerForwarded = 0
        let stream = try listener.accept(timeout: .seconds(5))
        let payload = Self.pattern(512 << 10, seed: 2)
        let reader = HostResult.start { () throws(VsockError) -> [UInt8] in
            var all: [UInt8] = []
            while all.count < payload.count { all += try stream.read(upTo: 3000, timeout: .seconds(30)) }
            return all
        }
        var sent = 0
        var creditUpdates = 0
        let deadline = DispatchTime.now() + 30
        while sent < payload.count, DispatchTime.now() < deadline {
            let credit = peerBuffer - (sent - peerForwarded)
            if credit > 0 {
                let chunk = min(4096, credit, payload.count - sent)
                #expect(
                    try guest.send(
                        Packet(
                            sourcePort: 5000, destinationPort: 1024, operation: Packet.readWrite,
                            payload: Array(payload[sent..<(sent + chunk)]))))
                sent += chunk
                continue
            }
            let packets = try guest.receive()
            for packet in packets {
                #expect(packet.operation == Packet.creditUpdate, "\(packet)")
                creditUpdates += 1
                peerBuffer = Int(packet.bufferAllocation)
                peerForwarded = Int(packet.forwardCount)
            }
            if packets.isEmpty { usleep(200) }
        }
        #expect(try reader.wait().get() == payload)
        #expect(creditUpdates >= (512 - 32) / 32)
        #expect(!guest.driver.needsReset)
    }

    /// Several host writers at once, one per connection, against one guest: every byte arrives
    /// on its own connection and no connection starves.
    @Test func concurrentConnectionsEachDeliverTheirOwnBytes() throws {
        let guest = try VsockTestGuest()
        let listener = try guest.host.listen(port: 1024)
        let guestBuffer: UInt32 = 32 << 10
        var ports: [UInt32: UInt32] = [:]
        var streams: [VsockStream] = []
        for port in UInt32(6000)..<6004 {
            #expect(try guest.connect(from: port, to: 1024, bufferAllocation: guestBuffer).map(\.operation) == [Packet.response])
            streams.append(try listener.accept(timeout: .seconds(5)))
            ports[port] = 1024
        }
        let count = 300 << 10
        let writers = streams.map { stream in
            HostResult.start { () throws(VsockError) in
                try stream.write(Self.pattern(count, seed: Int(stream.guestPort)), timeout: .seconds(30))
                return true
            }
        }
        let received = try receiveAsGuest(guest, ports: ports, count: count, guestBuffer: guestBuffer)
        for port in ports.keys { #expect(received[port] == Self.pattern(count, seed: Int(port))) }
        for writer in writers { #expect(try writer.wait().get()) }
    }
}
