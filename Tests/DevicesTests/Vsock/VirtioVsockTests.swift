import Devices
import Dispatch
import GuestMemory
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct VirtioVsockTests {
    typealias Packet = VsockPacket
    static let guestPort: UInt32 = 5000
    static let hostPort: UInt32 = 1024

    /// A guest connection to a listening host port, accepted on the host side.
    func connected(
        _ guest: VsockTestGuest, guestBuffer: UInt32 = 64 << 10
    ) throws -> (VsockListener, VsockStream) {
        let listener = try guest.host.listen(port: Self.hostPort)
        let answer = try guest.connect(from: Self.guestPort, to: Self.hostPort, bufferAllocation: guestBuffer)
        #expect(answer.map(\.operation) == [Packet.response])
        let stream = try listener.accept(timeout: .seconds(5))
        return (listener, stream)
    }

    func data(_ bytes: [UInt8], forwarded: UInt32 = 0, buffer: UInt32 = 64 << 10) -> Packet {
        Packet(
            sourcePort: Self.guestPort, destinationPort: Self.hostPort, operation: Packet.readWrite,
            bufferAllocation: buffer, forwardCount: forwarded, payload: bytes)
    }

    func control(_ operation: UInt16, flags: UInt32 = 0, forwarded: UInt32 = 0) -> Packet {
        Packet(sourcePort: Self.guestPort, destinationPort: Self.hostPort, operation: operation, flags: flags, forwardCount: forwarded)
    }

    @Test func identifiesAsAStreamSocketDeviceWithItsCID() throws {
        let guest = try VsockTestGuest()
        let driver = guest.driver
        #expect(driver.read(0x008) == 19)
        let features = driver.offeredFeatures
        #expect(features & VirtioVsock.Feature.stream != 0)
        #expect(features & (1 << 1) == 0)  // no SEQPACKET
        for queue in 0..<3 {
            driver.write(0x30, UInt32(queue))
            #expect(driver.read(0x34) == 256)
        }
        driver.write(0x30, 3)
        #expect(driver.read(0x34) == 0)
        #expect(driver.read(0x100) == VsockTestGuest.cid)
        #expect(driver.read(0x104) == 0)
        #expect(throws: VsockError.invalidCID(2)) { try VirtioVsock(guestCID: 2) }
        #expect(throws: VsockError.invalidCID(UInt32.max)) { try VirtioVsock(guestCID: .max) }
    }

    @Test func guestConnectsToAListeningHostPortAndDataFlowsBothWays() throws {
        let guest = try VsockTestGuest()
        let listener = try guest.host.listen(port: Self.hostPort)
        let answer = try guest.connect(from: Self.guestPort, to: Self.hostPort)
        let response = try #require(answer.first)
        #expect(response.operation == Packet.response)
        #expect(response.sourceCID == 2 && response.destinationCID == UInt64(VsockTestGuest.cid))
        #expect(response.sourcePort == Self.hostPort && response.destinationPort == Self.guestPort)
        #expect(response.bufferAllocation == 256 << 10)
        #expect(response.forwardCount == 0)
        #expect(guest.driver.interrupts.edges >= 1)
        let stream = try listener.accept(timeout: .seconds(5))
        #expect(stream.guestPort == Self.guestPort && stream.hostPort == Self.hostPort)

        try guest.send(data(Array("hello".utf8)))
        #expect(try stream.read(upTo: 100, timeout: .seconds(5)) == Array("hello".utf8))
        try stream.write(Array("world".utf8))
        let reply = try guest.receive()
        #expect(reply.count == 1)
        #expect(reply.first?.operation == Packet.readWrite)
        #expect(reply.first?.payload == Array("world".utf8))
        #expect(reply.first?.forwardCount == 5)
        #expect(!guest.driver.needsReset)
    }

    @Test func requestsWithoutAListenerAndPacketsForUnknownConnectionsGetRST() throws {
        let guest = try VsockTestGuest()
        let refused = try guest.connect(from: 6000, to: 4444)
        #expect(refused.map(\.operation) == [Packet.reset])
        #expect(refused.first?.destinationPort == 6000 && refused.first?.sourcePort == 4444)
        try guest.send(data([1, 2, 3]))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
        // Never answer an RST with an RST.
        try guest.send(control(Packet.reset))
        #expect(try guest.receive().isEmpty)
        // A second listener on the same port is refused; after close the port is free again.
        let listener = try guest.host.listen(port: Self.hostPort)
        #expect(throws: VsockError.portInUse(Self.hostPort)) { try guest.host.listen(port: Self.hostPort) }
        listener.close()
        #expect(throws: VsockError.closed) { try listener.accept(timeout: .milliseconds(10)) }
        _ = try guest.host.listen(port: Self.hostPort)
    }

    @Test func hostInitiatedConnectAnsweredByTheGuest() throws {
        let guest = try VsockTestGuest()
        let (result, request) = try guest.connectFromHost(to: 7000)
        #expect(request.operation == Packet.request)
        #expect(request.destinationPort == 7000 && request.destinationCID == UInt64(VsockTestGuest.cid))
        #expect(request.bufferAllocation == 256 << 10)
        try guest.send(Packet(sourcePort: 7000, destinationPort: request.sourcePort, operation: Packet.response))
        let stream = try result.wait().get()
        #expect(stream.guestPort == 7000 && stream.hostPort == request.sourcePort)
        try stream.write([9, 8, 7])
        #expect(try guest.receive().first?.payload == [9, 8, 7])
        try guest.send(Packet(sourcePort: 7000, destinationPort: request.sourcePort, operation: Packet.readWrite, payload: [1]))
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [1])
    }

    @Test func hostConnectRefusedOrUnansweredFails() throws {
        let guest = try VsockTestGuest()
        let (refused, request) = try guest.connectFromHost(to: 7001)
        try guest.send(Packet(sourcePort: 7001, destinationPort: request.sourcePort, operation: Packet.reset))
        #expect(throws: VsockError.connectionRefused(port: 7001)) { try refused.wait().get() }

        #expect(throws: VsockError.timedOut(operation: "connect to guest port 7002")) {
            try guest.host.connect(guestPort: 7002, timeout: .milliseconds(50))
        }
        // The guest saw the request and then the RST that abandoned it.
        let seen = try guest.receive().map(\.operation)
        #expect(seen == [Packet.request, Packet.reset])
    }

    /// Before the guest driver is up (no receive buffers) a timed-out connect leaves nothing
    /// behind: the guest later sees no stale REQUEST.
    @Test func connectBeforeTheDriverIsUpTimesOutCleanly() throws {
        let guest = try VsockTestGuest(receiveBuffers: 0)
        #expect(throws: VsockError.timedOut(operation: "connect to guest port 7003")) {
            try guest.host.connect(guestPort: 7003, timeout: .milliseconds(20))
        }
        for index in UInt16(0)..<4 { try guest.post(index) }
        guest.driver.notify(queue: UInt32(VsockTestGuest.receiveQueue))
        #expect(try guest.receive().isEmpty)
    }

    @Test func guestShutdownOfSendingGivesEndOfStreamAfterTheData() throws {
        let guest = try VsockTestGuest()
        let (_, stream) = try connected(guest)
        try guest.send(data([1, 2, 3]))
        try guest.send(control(Packet.shutdown, flags: Packet.shutdownSend))
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [1, 2, 3])
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [])
        // The other direction still works.
        try stream.write([4])
        #expect(try guest.receive().first?.payload == [4])
        // Data after the guest said it would send no more breaks the protocol.
        try guest.send(data([5]))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
    }

    @Test func guestFullShutdownIsAnsweredWithRSTAndEndsTheStream() throws {
        let guest = try VsockTestGuest()
        let (listener, stream) = try connected(guest)
        try guest.send(data([1, 2]))
        try guest.send(control(Packet.shutdown, flags: Packet.shutdownSend | Packet.shutdownReceive))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [1, 2])
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [])
        #expect(throws: VsockError.brokenPipe(port: Self.guestPort)) { try stream.write([1]) }
        // The ports are free again: the same pair connects anew.
        #expect(try guest.connect(from: Self.guestPort, to: Self.hostPort).map(\.operation) == [Packet.response])
        let second = try listener.accept(timeout: .seconds(5))
        try guest.send(data([7]))
        #expect(try second.read(upTo: 10, timeout: .seconds(5)) == [7])
    }

    @Test func hostCloseSendsQueuedDataThenShutdownAndWaitsForTheGuestRST() throws {
        // One receive buffer, used by the RESPONSE and not reposted: what follows must wait, in order.
        let guest = try VsockTestGuest(receiveBuffers: 1)
        let listener = try guest.host.listen(port: Self.hostPort)
        try guest.send(control(Packet.request))
        #expect(try guest.receive(repost: false).map(\.operation) == [Packet.response])
        let stream = try listener.accept(timeout: .seconds(5))
        try stream.write([1, 2, 3])
        stream.close()
        for index in UInt16(1)...4 { try guest.post(index) }
        guest.driver.notify(queue: UInt32(VsockTestGuest.receiveQueue))
        let held = try guest.receive()
        #expect(held.map(\.operation) == [Packet.readWrite, Packet.shutdown])
        #expect(held.first?.payload == [1, 2, 3])
        #expect(held.last?.flags == Packet.shutdownSend | Packet.shutdownReceive)
        #expect(throws: VsockError.closed) { try stream.read(upTo: 1) }
        try guest.send(control(Packet.reset))
        #expect(try guest.receive().isEmpty)
        // Gone from the table: more data for it is answered with RST.
        try guest.send(data([1]))
        #expect(try guest.receive().map(\.operation) == [Packet.reset])
    }

    @Test func hostShutdownOfWritingTellsTheGuest() throws {
        let guest = try VsockTestGuest()
        let (_, stream) = try connected(guest)
        stream.shutdown(.write)
        let packet = try #require(try guest.receive().first)
        #expect(packet.operation == Packet.shutdown && packet.flags == Packet.shutdownSend)
        #expect(throws: VsockError.brokenPipe(port: Self.guestPort)) { try stream.write([1]) }
        try guest.send(data([3]))
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [3])
    }

    @Test func guestResetFailsReadsAfterTheBufferedDataAndFailsWrites() throws {
        let guest = try VsockTestGuest()
        let (_, stream) = try connected(guest)
        try guest.send(data([1]))
        try guest.send(control(Packet.reset))
        #expect(try guest.receive().isEmpty)
        #expect(try stream.read(upTo: 10, timeout: .seconds(5)) == [1])
        #expect(throws: VsockError.connectionReset(port: Self.guestPort)) { try stream.read(upTo: 10) }
        #expect(throws: VsockError.connectionReset(port: Self.guestPort)) { try stream.write([1]) }
    }

    @Test func aBlockedReadWakesOnDataAndTimesOutWithout() throws {
        let guest = try VsockTestGuest()
        let (_, stream) = try connected(guest)
        #expect(throws: VsockError.timedOut(operation: "read from guest port \(Self.guestPort)")) {
            try stream.read(upTo: 10, timeout: .milliseconds(20))
        }
        let result = HostResult.start { () throws(VsockError) in try stream.read(upTo: 10, timeout: .seconds(5)) }
        try guest.send(data([42]))
        #expect(try result.wait().get() == [42])
    }

    /// The TTRPC client runs over any `ByteStream`: read-some, write-all, close. Closing wakes a
    /// reader blocked in another thread.
    @Test func worksAsTheByteStreamTTRPCUses() throws {
        let guest = try VsockTestGuest()
        let (_, vsock) = try connected(guest)
        let stream: any ByteStreamShape = vsock
        try [UInt8]([1, 2]).withUnsafeBytes { try stream.write($0) }
        #expect(try guest.receive().first?.payload == [1, 2])
        let blocked = HostResult.start { () throws(VsockError) -> Int in
            var byte: UInt8 = 0
            return try withUnsafeMutableBytes(of: &byte) { buffer in Result { () throws(VsockError) in try vsock.read(into: buffer) } }
                .get()
        }
        usleep(20_000)
        stream.close()
        #expect(throws: VsockError.closed) { try blocked.wait().get() }
        #expect(try guest.receive().map(\.flags) == [Packet.shutdownSend | Packet.shutdownReceive])
    }

    @Test func creditRequestIsAnsweredWithCreditUpdate() throws {
        let guest = try VsockTestGuest()
        let (_, stream) = try connected(guest)
        try guest.send(data([1, 2, 3, 4]))
        #expect(try stream.read(upTo: 2, timeout: .seconds(5)) == [1, 2])
        try guest.send(control(Packet.creditRequest))
        let update = try #require(try guest.receive().first)
        #expect(update.operation == Packet.creditUpdate)
        #expect(update.forwardCount == 2 && update.bufferAllocation == 256 << 10)
    }

    /// What the VMM does when the VM stops: nothing blocked on the guest keeps waiting.
    @Test func resetAllConnectionsWakesBlockedCallsAndTellsTheGuest() throws {
        let guest = try VsockTestGuest()
        let (listener, stream) = try connected(guest)
        #expect(try guest.connect(from: Self.guestPort + 1, to: Self.hostPort).map(\.operation) == [Packet.response])
        let blocked = HostResult.start { () throws(VsockError) in try stream.read(upTo: 10, timeout: .seconds(10)) }
        usleep(20_000)
        guest.host.resetAllConnections()
        #expect(throws: VsockError.connectionReset(port: Self.guestPort)) { try blocked.wait().get() }
        let resets = try guest.receive()
        #expect(resets.map(\.operation) == [Packet.reset, Packet.reset])
        #expect(Set(resets.map(\.destinationPort)) == [Self.guestPort, Self.guestPort + 1])
        // The listener stays; the unaccepted connection is gone.
        #expect(throws: VsockError.timedOut(operation: "accept on port \(Self.hostPort)")) {
            try listener.accept(timeout: .milliseconds(10))
        }
        #expect(try guest.connect(from: Self.guestPort + 2, to: Self.hostPort).map(\.operation) == [Packet.response])
    }

    @Test func driverResetResetsEveryConnection() throws {
        let guest = try VsockTestGuest()
        let (_, stream) = try connected(guest)
        guest.driver.write(0x70, 0)
        #expect(throws: VsockError.connectionReset(port: Self.guestPort)) { try stream.read(upTo: 10, timeout: .seconds(1)) }
    }
}

/// The shape of the TTRPC target's `ByteStream` (Devices does not depend on TTRPC): the
/// conformance below fails to compile if `VsockStream` stops matching it.
protocol ByteStreamShape: AnyObject, Sendable {
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
    func write(_ bytes: UnsafeRawBufferPointer) throws
    func close()
}

extension VsockStream: ByteStreamShape {}
