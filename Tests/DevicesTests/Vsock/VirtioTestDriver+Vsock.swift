import Devices
import Dispatch
import Foundation
import GuestMemory
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A virtio-vsock packet as the guest lays it out (spec 5.10.6): a 44-byte little-endian header
/// and the payload right after it.
struct VsockPacket: Equatable, CustomStringConvertible {
    static let headerLength = 44
    static let request: UInt16 = 1, response: UInt16 = 2, reset: UInt16 = 3, shutdown: UInt16 = 4
    static let readWrite: UInt16 = 5, creditUpdate: UInt16 = 6, creditRequest: UInt16 = 7
    static let shutdownReceive: UInt32 = 1, shutdownSend: UInt32 = 2

    var sourceCID: UInt64 = UInt64(VsockTestGuest.cid)
    var destinationCID: UInt64 = 2
    var sourcePort: UInt32
    var destinationPort: UInt32
    var length: UInt32?
    var type: UInt16 = 1
    var operation: UInt16
    var flags: UInt32 = 0
    var bufferAllocation: UInt32 = 64 << 10
    var forwardCount: UInt32 = 0
    var payload: [UInt8] = []

    var description: String {
        "op \(operation) \(sourceCID):\(sourcePort)→\(destinationCID):\(destinationPort) len \(payload.count) flags \(flags) buf \(bufferAllocation) fwd \(forwardCount)"
    }

    func store(in memory: GuestMemory, at address: GuestAddress) throws {
        try memory.store(sourceCID, at: address)
        try memory.store(destinationCID, at: address + 8)
        try memory.store(sourcePort, at: address + 16)
        try memory.store(destinationPort, at: address + 20)
        try memory.store(length ?? UInt32(payload.count), at: address + 24)
        try memory.store(type, at: address + 28)
        try memory.store(operation, at: address + 30)
        try memory.store(flags, at: address + 32)
        try memory.store(bufferAllocation, at: address + 36)
        try memory.store(forwardCount, at: address + 40)
    }

    /// Reads a packet the device wrote; `used` is the used-ring length (header + payload).
    static func load(from memory: GuestMemory, at address: GuestAddress, used: UInt32) throws -> VsockPacket {
        var packet = VsockPacket(
            sourceCID: try memory.load(UInt64.self, at: address), destinationCID: try memory.load(UInt64.self, at: address + 8),
            sourcePort: try memory.load(UInt32.self, at: address + 16), destinationPort: try memory.load(UInt32.self, at: address + 20),
            length: try memory.load(UInt32.self, at: address + 24), type: try memory.load(UInt16.self, at: address + 28),
            operation: try memory.load(UInt16.self, at: address + 30), flags: try memory.load(UInt32.self, at: address + 32),
            bufferAllocation: try memory.load(UInt32.self, at: address + 36), forwardCount: try memory.load(UInt32.self, at: address + 40))
        let count = min(Int(packet.length ?? 0), Int(used) - headerLength)
        packet.payload = try memory.readBytes(at: address + UInt64(headerLength), count: max(count, 0))
        return packet
    }
}

/// The guest side of virtio-vsock over `VirtioTestDriver`, as Linux's virtio_transport does it:
/// receive buffers (one writable descriptor each, header + 4 KiB) posted up front and reposted as
/// they are used; each transmitted packet is a header descriptor plus a payload descriptor.
final class VsockTestGuest {
    static let cid: UInt32 = 42
    static let receiveArea: GuestAddress = 0x10_0000
    static let transmitArea: GuestAddress = 0x30_0000
    static let receiveQueue = 0, transmitQueue = 1

    let device: VirtioVsock
    let driver: VirtioTestDriver
    let bufferSize: UInt32
    private var usedSeen: UInt16 = 0

    var host: VsockHostEndpoint { device.host }
    var memory: GuestMemory { driver.memory }

    init(limits: VirtioVsock.Limits = .init(), receiveBuffers: UInt16 = 32, bufferSize: UInt32 = 44 + 4096) throws {
        device = try VirtioVsock(guestCID: Self.cid, limits: limits)
        driver = try VirtioTestDriver(device: device, memory: try GuestMemory.anonymous([(base: 0, size: 8 << 20)]))
        device.attach(to: driver.transport)
        self.bufferSize = bufferSize
        guard driver.initialize(queueSize: 64, queueCount: 3) else { throw TestGuestError.deviceRefused }
        for index in 0..<receiveBuffers { try post(index) }
        driver.notify(queue: UInt32(Self.receiveQueue))
    }

    /// Posts receive buffer `index` (descriptor `index` ↔ buffer `index`).
    func post(_ index: UInt16, length: UInt32? = nil) throws {
        try driver.writeDescriptor(
            index, address: Self.receiveArea + UInt64(index) * UInt64(bufferSize), length: length ?? bufferSize,
            flags: 2, next: 0, queue: Self.receiveQueue)
        try driver.publish(index, queue: Self.receiveQueue)
    }

    /// Packets the device delivered since the last call, oldest first. Their buffers are
    /// reposted (and the device notified) unless `repost` is false.
    func receive(repost: Bool = true) throws -> [VsockPacket] {
        var packets: [VsockPacket] = []
        let used = driver.usedIndex(queue: Self.receiveQueue)
        while usedSeen != used {
            let element = try driver.usedElement(usedSeen, queue: Self.receiveQueue)
            let address = Self.receiveArea + UInt64(element.id) * UInt64(bufferSize)
            packets.append(try VsockPacket.load(from: memory, at: address, used: element.length))
            if repost { try post(UInt16(element.id)) }
            usedSeen &+= 1
        }
        if repost, !packets.isEmpty { driver.notify(queue: UInt32(Self.receiveQueue)) }
        return packets
    }

    /// Transmits `packet` and notifies; returns false when the device did not consume it.
    @discardableResult
    func send(_ packet: VsockPacket) throws -> Bool {
        try packet.store(in: memory, at: Self.transmitArea)
        var buffers = [VirtioTestDriver.Buffer(address: Self.transmitArea, length: UInt32(VsockPacket.headerLength), writable: false)]
        if !packet.payload.isEmpty {
            try memory.write(packet.payload, at: Self.transmitArea + 0x1000)
            buffers.append(.init(address: Self.transmitArea + 0x1000, length: UInt32(packet.payload.count), writable: false))
        }
        let before = driver.usedIndex(queue: Self.transmitQueue)
        try driver.publish(try driver.addChain(buffers, queue: Self.transmitQueue), queue: Self.transmitQueue)
        driver.notify(queue: UInt32(Self.transmitQueue))
        return driver.usedIndex(queue: Self.transmitQueue) == before &+ 1
    }

    /// Transmits `bytes` as one buffer, whatever they hold; returns false when not consumed.
    @discardableResult
    func sendRaw(_ bytes: [UInt8]) throws -> Bool {
        try memory.write(bytes, at: Self.transmitArea)
        let before = driver.usedIndex(queue: Self.transmitQueue)
        let buffer = VirtioTestDriver.Buffer(address: Self.transmitArea, length: UInt32(bytes.count), writable: false)
        try driver.publish(try driver.addChain([buffer], queue: Self.transmitQueue), queue: Self.transmitQueue)
        driver.notify(queue: UInt32(Self.transmitQueue))
        return driver.usedIndex(queue: Self.transmitQueue) == before &+ 1
    }

    /// Connects guest `port` to host `hostPort`; returns the device's answer.
    func connect(from port: UInt32, to hostPort: UInt32, bufferAllocation: UInt32 = 64 << 10) throws -> [VsockPacket] {
        try send(
            VsockPacket(sourcePort: port, destinationPort: hostPort, operation: VsockPacket.request, bufferAllocation: bufferAllocation))
        return try receive()
    }
}

enum TestGuestError: Error {
    case deviceRefused
    case noPacket
}

/// The result of a host call made on another thread.
final class HostResult<Value: Sendable>: Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let value = Mutex<Result<Value, VsockError>?>(nil)

    /// Runs `body` on a thread of its own (host calls block; a global queue's next thread may be
    /// slow to come when other tests hold its threads).
    static func start(_ body: @escaping @Sendable () throws(VsockError) -> Value) -> HostResult {
        let result = HostResult()
        Thread.detachNewThread { result.set(body) }
        return result
    }

    private func set(_ body: () throws(VsockError) -> Value) {
        let result = Result(catching: body)
        value.withLock { $0 = result }
        done.signal()
    }

    func wait() throws -> Result<Value, VsockError> {
        guard done.wait(timeout: .now() + 30) == .success else { throw HostResultError.timedOut }
        return value.withLock { $0! }
    }
}

enum HostResultError: Error {
    case timedOut
}

extension VsockTestGuest {
    /// Starts a host `connect` on another thread; returns it and the REQUEST the guest got.
    func connectFromHost(to port: UInt32) throws -> (HostResult<VsockStream>, VsockPacket) {
        let host = self.host
        let result = HostResult.start { () throws(VsockError) in try host.connect(guestPort: port, timeout: .seconds(30)) }
        guard let request = try waitForPackets().first else { throw TestGuestError.noPacket }
        return (result, request)
    }

    /// Polls the receive queue until the device delivered something (host threads deliver
    /// asynchronously) or 30 s passed.
    func waitForPackets() throws -> [VsockPacket] {
        let deadline = DispatchTime.now() + 30
        while DispatchTime.now() < deadline {
            let packets = try receive()
            if !packets.isEmpty { return packets }
            usleep(1000)
        }
        return []
    }
}
