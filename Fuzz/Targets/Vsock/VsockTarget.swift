@testable import Devices
import DeviceFuzzing
import FuzzSupport

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    VsockTarget.run(FuzzInput(data, size))
    return 0
}

/// virtio-vsock (Sources/Devices/Vsock*.swift, VirtioVsock.swift) with the guest and the host
/// both acting, over the real virtio-mmio transport and virtqueues. Guest steps send packets on
/// the transmit queue (every header field from the input, the payload split or through an
/// indirect table), post receive buffers of any size, notify any queue, write any guest byte or
/// access any register. Host steps are what `VsockHostEndpoint`, `VsockListener` and
/// `VsockStream` do under the device lock (listen, accept, connect, read, write, shutdown,
/// close, reset), minus the blocking. Small limits make every bound reachable.
@main
enum VsockTarget {
    static let guestCID: UInt64 = 3
    static let limits = VirtioVsock.Limits(
        bufferAllocation: 4096, outgoingBytes: 4096, maxPacketPayload: 1024, creditUpdateThreshold: 1024,
        connections: 4, backlog: 2, controlPackets: 16)

    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    /// One input's world: a fresh device, a driver, and the host's listeners.
    struct World {
        let device: VirtioVsock
        let driver: MMIODriver
        var receive = DriverQueue(index: 0, size: 16)
        var transmit = DriverQueue(index: 1, size: 16)
        var arena = BufferArena()
        var listeners: [VsockListener] = []
        let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 8)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        FuzzGuest.resetMemory()
        let device = try! VirtioVsock(guestCID: UInt32(guestCID), limits: limits, logger: FuzzGuest.quietLogger)
        let transport = VirtioMMIOTransport(
            device: device, memory: FuzzGuest.memory, interrupt: IgnoredInterrupt(), logger: FuzzGuest.quietLogger)
        device.attach(to: transport)
        var world = World(device: device, driver: MMIODriver(transport))
        defer { world.readBuffer.deallocate() }
        let features: UInt64 = 1 << 32 | VirtioVsock.Feature.stream | (input.bool() ? 1 << 28 : 0)
        world.driver.initialize(features: features, queues: [world.receive, world.transmit, DriverQueue(index: 2, size: 16)])
        if let listener = try? device.host.listen(port: 1024) { world.listeners.append(listener) }
        for _ in 0..<64 where !input.isEmpty {
            switch input.byte() % 5 {
            case 0: guestSends(&input, &world)
            case 1: guestPostsReceiveBuffers(&input, &world)
            case 2: hostStep(&input, &world)
            case 3: world.driver.notify(Int(input.byte() % 4))
            default: world.driver.hostileStep(&input)
            }
        }
    }

    static func guestSends(_ input: inout FuzzInput, _ world: inout World) {
        let form = input.byte()
        var header = VsockHeader(
            sourceCID: form & 1 != 0 ? input.integer() : guestCID,
            destinationCID: form & 2 != 0 ? input.integer() : VsockConnections.hostCID,
            sourcePort: input.integer(), destinationPort: input.integer(),
            type: form & 4 != 0 ? input.integer() : VsockHeader.PacketType.stream,
            operation: UInt16(input.byte()), flags: input.integer(),
            bufferAllocation: input.integer(), forwardCount: input.integer())
        let payload = input.bytes(Int(input.byte()))
        header.length = form & 0x20 != 0 ? input.integer() : UInt32(payload.count)
        let encoded = header.encoded
        var buffers: [GuestBuffer] = []
        let pieces = form & 8 != 0 ? [Array(encoded[0..<20]), Array(encoded[20...])] : [encoded]
        for piece in pieces + (payload.isEmpty ? [] : [payload]) {
            buffers.append(
                GuestBuffer(
                    address: world.arena.allocate(piece.count, contents: piece),
                    length: UInt32(piece.count), deviceWritable: false))
        }
        world.transmit.post(buffers, indirect: form & 0x10 != 0)
        world.driver.notify(VirtioVsock.transmitQueue)
    }

    static func guestPostsReceiveBuffers(_ input: inout FuzzInput, _ world: inout World) {
        let sizes = [4096, 64, 44, 1024, 20, 45, 128, 2048]
        for _ in 0..<(1 + Int(input.byte() % 4)) {
            let size = sizes[Int(input.byte() % 8)]
            world.receive.post(
                [GuestBuffer(address: world.arena.allocate(size), length: UInt32(size), deviceWritable: true)],
                indirect: false)
        }
        world.driver.notify(VirtioVsock.receiveQueue)
    }

    /// What the host API does under the device lock, without waiting.
    static func hostStep(_ input: inout FuzzInput, _ world: inout World) {
        let core = world.device.core
        let operation = input.byte() % 8
        let connections = core.withState { $0.connections.keys.sorted() }
        let pick = input.byte()
        let connection = connections.isEmpty ? UInt64(pick) : connections[Int(pick) % connections.count]
        switch operation {
        case 0:
            if let listener = try? world.device.host.listen(port: 1024 + UInt32(pick % 4)) { world.listeners.append(listener) }
        case 1:
            guard !world.listeners.isEmpty else { return }
            let listener = world.listeners[Int(pick) % world.listeners.count]
            _ = try? core.withState { (_: inout VsockConnections) throws(VsockError) in
                try listener.host.claim(port: listener.port, listener: listener.id)
            }
        case 2:
            let port: UInt32 = input.integer()
            _ = try? core.withState(delivering: true) { (state: inout VsockConnections) throws(VsockError) in
                try state.openConnection(guestPort: port)
            }
        case 3:
            let buffer = UnsafeMutableRawBufferPointer(rebasing: world.readBuffer[0..<Int(input.byte()) * 4])
            _ = try? core.withState(delivering: true) { (state: inout VsockConnections) throws(VsockError) in
                try state.read(connection, into: buffer)
            }
        case 4:
            let bytes = input.bytes(Int(input.integer(UInt16.self) % 5000))
            var written = 0
            bytes.withUnsafeBytes { raw in
                _ = try? core.withState(delivering: true) { (state: inout VsockConnections) throws(VsockError) in
                    try state.write(connection, raw, written: &written)
                }
            }
        case 5:
            let flags = UInt32(input.byte() % 4)
            core.withState(delivering: true) { $0.shutdown(connection, flags: flags) }
        case 6:
            let abandon = input.bool()
            core.withState(delivering: true) { abandon ? $0.abandon(connection) : $0.close(connection) }
        default:
            let tellingGuest = input.bool()
            core.withState(delivering: true) { $0.resetAll(tellingGuest: tellingGuest) }
        }
    }

    /// Conversations as the Linux driver and the host API have them.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        struct Script {
            var builder = FuzzInputBuilder()
            init() { builder.byte(0) }  // no indirect descriptors
            mutating func receiveBuffers(_ count: UInt8) {
                builder.byte(1)
                builder.byte(count - 1)
                for _ in 0..<count { builder.byte(0) }  // 4 KiB each
            }
            mutating func send(
                _ operation: UInt16, source: UInt32, destination: UInt32, flags: UInt32 = 0,
                payload: [UInt8] = [], form: UInt8 = 0
            ) {
                builder.byte(0)
                builder.byte(form)
                builder.integer(source)
                builder.integer(destination)
                builder.byte(UInt8(operation))
                builder.integer(flags)
                builder.integer(UInt32(4096))
                builder.integer(UInt32(0))
                builder.byte(UInt8(payload.count))
                builder.append(payload)
            }
            mutating func host(_ operation: UInt8, pick: UInt8 = 0, _ arguments: [UInt8] = []) {
                builder.byte(2)
                builder.byte(operation)
                builder.byte(pick)
                builder.append(arguments)
            }
        }
        let hostPort = UInt32(1) << 30
        var guestConnects = Script()
        guestConnects.receiveBuffers(4)
        guestConnects.send(VsockHeader.Operation.request, source: 5000, destination: 1024)
        guestConnects.host(1)
        guestConnects.send(VsockHeader.Operation.readWrite, source: 5000, destination: 1024, payload: Array("hello".utf8))
        guestConnects.host(3, [64])
        guestConnects.host(4, [5, 0] + Array("world".utf8))
        guestConnects.send(VsockHeader.Operation.creditRequest, source: 5000, destination: 1024)
        guestConnects.send(VsockHeader.Operation.shutdown, source: 5000, destination: 1024, flags: 3)

        var hostConnects = Script()
        hostConnects.receiveBuffers(4)
        hostConnects.host(2, [0x88, 0x13, 0, 0])  // guest port 5000
        hostConnects.send(VsockHeader.Operation.response, source: 5000, destination: hostPort)
        hostConnects.host(4, [3, 0] + Array("abc".utf8))
        hostConnects.receiveBuffers(2)
        hostConnects.send(VsockHeader.Operation.readWrite, source: 5000, destination: hostPort, payload: [1, 2, 3], form: 8)
        hostConnects.send(VsockHeader.Operation.creditUpdate, source: 5000, destination: hostPort)
        hostConnects.host(6)
        hostConnects.send(VsockHeader.Operation.reset, source: 5000, destination: hostPort)

        var malformed = Script()
        malformed.receiveBuffers(2)
        malformed.send(VsockHeader.Operation.readWrite, source: 7, destination: 1024, payload: [9, 9], form: 0x20)
        malformed.builder.integer(UInt32(100))  // claims 100 bytes, carries 2
        malformed.send(9, source: 7, destination: 1024)
        malformed.send(VsockHeader.Operation.request, source: 8, destination: 4444)

        return [
            ("guest-connects", guestConnects.builder.bytes), ("host-connects", hostConnects.builder.bytes),
            ("malformed", malformed.builder.bytes),
        ]
    }
}
