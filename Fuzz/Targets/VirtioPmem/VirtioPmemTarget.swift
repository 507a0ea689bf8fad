import DeviceFuzzing
import Devices
import FuzzSupport
import GuestMemory

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    VirtioPmemTarget.run(FuzzInput(data, size))
    return 0
}

/// A guest driving virtio-pmem (Sources/Devices/Pmem) through the real virtio-mmio transport
/// and virtqueue: flush requests and requests of any other type, split any way, with response
/// buffers too short, read-only or outside RAM; arbitrary chains; config-space reads of any
/// offset and width; notifies of any queue; writes to any guest byte or register.
@main
enum VirtioPmemTarget {
    /// The region the device describes: outside the fuzz guest's RAM, as in a real guest (the
    /// device never touches it; the guest maps it).
    static let start = GuestAddress(128 << 30)
    static let size: UInt64 = 2 << 20

    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        FuzzGuest.resetMemory()
        let device = VirtioPmem(start: start, size: size, logger: FuzzGuest.quietLogger)
        let driver = MMIODriver(
            VirtioMMIOTransport(device: device, memory: FuzzGuest.memory, interrupt: IgnoredInterrupt(), logger: FuzzGuest.quietLogger))
        let claim = input.byte()
        var features: UInt64 = 1 << 32
        if claim & 1 != 0 { features |= 1 << 28 }  // indirect descriptors
        if claim & 2 != 0 { features |= UInt64(input.integer(UInt32.self)) }  // maybe bits never offered
        var queue = DriverQueue(index: 0, size: [64, 16, 8, 1, 0, 3, 32, 2][Int(input.byte() % 8)])
        driver.initialize(features: features, queues: [queue])
        var arena = BufferArena()
        for _ in 0..<64 where !input.isEmpty {
            switch input.byte() % 5 {
            case 0:
                queue.post(request(&input, &arena), indirect: input.bool())
                driver.notify(0)
            case 1:
                var buffers: [GuestBuffer] = []
                for _ in 0..<(1 + Int(input.byte() % 8)) {
                    buffers.append(GuestBuffer(address: input.integer(), length: input.integer(), deviceWritable: input.bool()))
                }
                queue.post(buffers, indirect: input.bool())
                driver.notify(0)
            case 2:
                // The config space (start, size) at any offset and width, past its end included.
                _ = driver.read(0x100 + UInt64(input.byte()), width: [1, 2, 4, 3][Int(input.byte() % 4)])
            case 3:
                driver.notify(Int(input.byte()))
            default:
                driver.hostileStep(&input)
            }
        }
    }

    /// A request as Linux's virtio_pmem sends it (a le32 type, then a writable le32 for the
    /// answer), with the type, the lengths and where the buffers lie taken from the input.
    static func request(_ input: inout FuzzInput, _ arena: inout BufferArena) -> [GuestBuffer] {
        let choice = input.byte()
        let type: UInt32 = choice < 200 ? 0 : input.integer(UInt32.self)  // 0: flush
        let layout = input.byte()
        let requestLength = layout & 0x1 != 0 ? UInt32(input.byte() % 16) : 4
        let responseLength = layout & 0x2 != 0 ? UInt32(input.byte() % 16) : 4
        let typeBytes = withUnsafeBytes(of: type.littleEndian) { Array($0) }
        var buffers = [
            GuestBuffer(
                address: arena.allocate(Int(requestLength), contents: typeBytes), length: requestLength, deviceWritable: layout & 0x4 != 0)
        ]
        if layout & 0x8 == 0 {
            // The answer in RAM, in the read-only page, or anywhere at all.
            let address: UInt64
            switch (layout >> 4) & 0x3 {
            case 0, 1: address = arena.allocate(Int(responseLength))
            case 2: address = FuzzGuest.readOnlyBase
            default: address = input.integer()
            }
            buffers.append(GuestBuffer(address: address, length: responseLength, deviceWritable: layout & 0x40 == 0))
        }
        return buffers
    }

    /// A flush as Linux sends it, a flush whose answer cannot be written, and an unknown type.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func seed(type: UInt32?, layout: UInt8, loop: Int = 1) -> [UInt8] {
            var builder = FuzzInputBuilder()
            builder.byte(1)  // indirect descriptors
            builder.byte(0)  // queue size 64
            for _ in 0..<loop {
                builder.byte(0)  // a request
                if let type {
                    builder.byte(200)
                    builder.integer(type)
                } else {
                    builder.byte(0)
                }
                builder.byte(layout)
                builder.byte(0)  // direct
            }
            return builder.bytes
        }
        return [
            ("flush", seed(type: nil, layout: 0)),
            ("flush-answer-read-only", seed(type: nil, layout: 0x20)),
            ("unknown-type", seed(type: 7, layout: 0)),
            ("flushes-in-a-loop", seed(type: nil, layout: 0, loop: 40)),
        ]
    }
}
