#if canImport(Glibc)
import Glibc
#endif
import DeviceFuzzing
import Devices
import FuzzSupport
import GuestMemory
import HostOS

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    VirtioNetTarget.run(FuzzInput(data, size))
    return 0
}

/// The network end of the device: a SOCK_SEQPACKET pair in place of the tap (one frame per
/// message, as a tap gives them), so frames the input injects reach the device's receive path
/// and frames it sends are drained. The device, its transport and virtqueues are the real ones;
/// the tap itself is tested against the kernel in VirtioNetTests.
final class PacketPairBackend: NetworkBackend {
    let device: FileDescriptor
    let peer: FileDescriptor

    init() {
        var pair: [Int32] = [-1, -1]
        guard
            socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair)
                == 0
        else { fatalError("socketpair: \(errno)") }
        device = FileDescriptor(adopting: pair[0])
        peer = FileDescriptor(adopting: pair[1])
    }

    var readableDescriptor: FileDescriptor { device }

    func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        let count = Glibc.read(device.rawValue, buffer.baseAddress, buffer.count)
        return count >= 0 ? count : nil
    }

    func send(header: UnsafeRawBufferPointer, frame: [(address: GuestAddress, length: Int)], from memory: GuestMemory) throws {
        _ = try memory.gatherWrite(prefix: header, ranges: frame, to: device)
    }

    func acceptOffloads(checksum: Bool, tcpSegmentationV4: Bool, tcpSegmentationV6: Bool) throws {}

    /// A frame (its virtio-net header first) for the device to receive.
    func inject(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(peer.rawValue, $0.baseAddress, $0.count, 0) }
    }

    /// Reads and drops everything the device sent.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 1 << 17)
        while buffer.withUnsafeMutableBytes({ Glibc.recv(peer.rawValue, $0.baseAddress, $0.count, 0) }) > 0 {}
        while buffer.withUnsafeMutableBytes({ (try? receive(into: $0)) ?? nil }) != nil {}
    }
}

/// A guest driving virtio-net (Sources/Devices/Net/VirtioNet.swift) through the real
/// virtio-mmio transport and virtqueues: it negotiates any features (offered or not), then each
/// step is a transmitted frame (any header, any length, split over buffers, maybe indirect),
/// receive buffers of any size, a frame arriving from the network, a notify of any queue, a
/// chain of arbitrary buffers, or a hostile act (any guest byte, any register).
@main
enum VirtioNetTarget {
    static let backend = PacketPairBackend()

    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        FuzzGuest.resetMemory()
        backend.drain()
        let mtu = [1500, 68, 9000, 65535][Int(input.byte() % 4)]
        let device = try! VirtioNet(
            backend: backend, mac: [0x02, 0, 0, 0, 0, 1], mtu: mtu, offloads: input.bool(), logger: FuzzGuest.quietLogger)
        let driver = MMIODriver(
            VirtioMMIOTransport(device: device, memory: FuzzGuest.memory, interrupt: IgnoredInterrupt(), logger: FuzzGuest.quietLogger))
        let claim = input.byte()
        var features: UInt64 = 1 << 32
        if claim & 1 != 0 { features |= 1 << 28 }  // indirect descriptors
        if claim & 2 != 0 { features |= device.offeredFeatures }
        if claim & 4 != 0 { features |= UInt64(input.integer(UInt32.self)) }  // maybe bits never offered
        let sizes: [UInt16] = [64, 16, 8, 1, 0, 3, 32, 2]
        var queues = [
            DriverQueue(index: 0, size: sizes[Int(input.byte() % 8)]), DriverQueue(index: 1, size: sizes[Int(input.byte() % 8)]),
        ]
        driver.initialize(features: features, queues: queues)
        var arena = BufferArena()
        for _ in 0..<64 where !input.isEmpty {
            switch input.byte() % 6 {
            case 0:
                // A frame to send: the header as the input says, then the frame.
                let header = input.bytes(VirtioNet.headerLength)
                let length = Int(input.integer(UInt16.self) % 4096)
                let bytes = header + [UInt8](repeating: 0x5a, count: length)
                let pieces = 1 + Int(input.byte() % 4)
                var buffers: [GuestBuffer] = []
                var offset = 0
                for piece in 0..<pieces {
                    let size = piece == pieces - 1 ? bytes.count - offset : bytes.count / pieces
                    let slice = Array(bytes[offset..<(offset + size)])
                    buffers.append(GuestBuffer(address: arena.allocate(size, contents: slice), length: UInt32(size), deviceWritable: false))
                    offset += size
                }
                queues[1].post(buffers, indirect: input.bool())
                driver.notify(1)
            case 1:
                // Receive buffers, as small or large as the input likes.
                for _ in 0..<(1 + Int(input.byte() % 4)) {
                    let size = Int(input.integer(UInt16.self) % 3000)
                    queues[0].post(
                        [GuestBuffer(address: arena.allocate(size), length: UInt32(size), deviceWritable: true)], indirect: input.bool())
                }
                driver.notify(0)
            case 2:
                // A frame from the network (header included), then the receive queue runs.
                let length = Int(input.integer(UInt16.self) % 9100)
                backend.inject(input.bytes(min(length, 64)) + [UInt8](repeating: 0xa5, count: max(0, length - 64)))
                driver.notify(0)
            case 3:
                driver.notify(Int(input.byte()))
            case 4:
                var buffers: [GuestBuffer] = []
                for _ in 0..<(1 + Int(input.byte() % 8)) {
                    buffers.append(GuestBuffer(address: input.integer(), length: input.integer(), deviceWritable: input.bool()))
                }
                let queue = Int(input.byte() % 2)
                queues[queue].post(buffers, indirect: input.bool())
                driver.notify(queue)
            default:
                driver.hostileStep(&input)
            }
        }
        backend.drain()
    }

    /// Linux's own traffic: receive buffers posted, a 60-byte frame sent, one received.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var builder = FuzzInputBuilder()
        builder.byte(0)  // MTU 1500
        builder.byte(1)  // offloads
        builder.byte(3)  // indirect + every offered feature
        builder.byte(0)
        builder.byte(0)  // two queues of 64
        builder.byte(1)  // receive buffers
        builder.byte(1)  // two of them
        for _ in 0..<2 {
            builder.integer(UInt16(1536))
            builder.byte(0)  // direct
        }
        builder.byte(0)  // send a frame
        builder.append([UInt8](repeating: 0, count: VirtioNet.headerLength))
        builder.integer(UInt16(60))
        builder.byte(0)  // one buffer
        builder.byte(0)  // direct
        builder.byte(2)  // a frame arrives
        builder.integer(UInt16(VirtioNet.headerLength + 60))
        builder.append([UInt8](repeating: 0, count: 64))
        return [("send-and-receive", builder.bytes)]
    }
}
