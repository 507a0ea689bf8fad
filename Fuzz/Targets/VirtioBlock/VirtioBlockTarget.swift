#if canImport(Glibc)
import Glibc
#endif
import DeviceFuzzing
import Devices
import FuzzSupport
import HostOS

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    VirtioBlockTarget.run(FuzzInput(data, size))
    return 0
}

/// A guest driving virtio-blk (Sources/Devices/VirtioBlock*.swift) through the real virtio-mmio
/// transport (VirtioMMIOTransport.swift) and virtqueues (Virtqueue.swift, DescriptorChain.swift)
/// over guest RAM the input writes. The driver sets the device up as Linux does, then each step
/// of the input is a block request (any type, sector, length and buffer split, direct or through
/// an indirect table), a chain of arbitrary buffers, a notify of any queue, or a hostile act: a
/// write to any guest byte or an access to any register.
@main
enum VirtioBlockTarget {
    static let sectors = 16
    /// The disk: a file of 16 sectors, rewritten before every input.
    static let disk = FuzzGuest.anonymousFile(size: 16 * 512)
    static let pristine = (0..<sectors).flatMap { [UInt8](repeating: UInt8($0), count: 512) }

    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        FuzzGuest.resetMemory()
        _ = ftruncate(disk.rawValue, off_t(pristine.count))
        _ = pristine.withUnsafeBytes { try? disk.pwrite($0, at: 0) }
        let device = try! VirtioBlock(file: disk, readOnly: input.bool(), identifier: "fuzz-disk", logger: FuzzGuest.quietLogger)
        let driver = MMIODriver(
            VirtioMMIOTransport(
                device: device, memory: FuzzGuest.memory, interrupt: IgnoredInterrupt(), logger: FuzzGuest.quietLogger))
        let claim = input.byte()
        var features: UInt64 = 1 << 32
        if claim & 1 != 0 { features |= 1 << 28 }  // indirect descriptors
        if claim & 2 != 0 { features |= device.offeredFeatures }
        if claim & 4 != 0 { features |= UInt64(input.integer(UInt32.self)) }  // maybe bits never offered
        var queue = DriverQueue(index: 0, size: [64, 16, 8, 1, 0, 3, 32, 2][Int(input.byte() % 8)])
        driver.initialize(features: features, queues: [queue])
        var arena = BufferArena()
        for _ in 0..<64 where !input.isEmpty {
            switch input.byte() % 4 {
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
                driver.notify(Int(input.byte()))
            default:
                driver.hostileStep(&input)
            }
        }
    }

    /// A block request as Linux builds it (header, data, status), with every field and the way
    /// it is split into buffers taken from the input.
    static func request(_ input: inout FuzzInput, _ arena: inout BufferArena) -> [GuestBuffer] {
        let known: [UInt32] = [0, 1, 4, 8]
        let choice = input.byte()
        let type = choice < 200 ? known[Int(choice % 4)] : input.integer(UInt32.self)
        let sector: UInt64 = input.bool() ? input.integer() : UInt64(input.byte())
        let layout = input.byte()
        let dataLength = layout & 0x80 != 0 ? Int(input.integer(UInt16.self) % 8192) : 512 * Int(layout & 0x7)
        let segments = 1 + Int((layout >> 3) & 0x3)
        var header = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: type.littleEndian) { header.replaceSubrange(0..<4, with: $0) }
        withUnsafeBytes(of: sector.littleEndian) { header.replaceSubrange(8..<16, with: $0) }
        let dataWritable = type != 1
        var buffers = [GuestBuffer(address: arena.allocate(16, contents: header), length: 16, deviceWritable: false)]
        var left = dataLength
        for index in 0..<segments where left > 0 {
            let length = index == segments - 1 ? left : max(left / (segments - index), 1)
            let contents = dataWritable ? [] : input.bytes(length)
            buffers.append(
                GuestBuffer(address: arena.allocate(length, contents: contents), length: UInt32(length), deviceWritable: dataWritable))
            left -= length
        }
        if layout & 0x20 == 0 {
            buffers.append(GuestBuffer(address: arena.allocate(1), length: 1, deviceWritable: true))
        }
        return buffers
    }

    /// Requests of every type Linux sends, one per seed, plus an indirect read.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func seed(indirect: Bool, _ type: UInt8, sector: UInt8, layout: UInt8, data: [UInt8] = []) -> [UInt8] {
            var builder = FuzzInputBuilder()
            builder.byte(0)  // read-write disk
            builder.byte(3)  // indirect + every offered feature
            builder.byte(0)  // queue size 64
            builder.byte(0)  // a request
            builder.byte(type)
            builder.byte(0)
            builder.byte(sector)
            builder.byte(layout)
            builder.append(data)
            builder.byte(indirect ? 1 : 0)
            return builder.bytes
        }
        return [
            ("read-one-sector", seed(indirect: false, 0, sector: 3, layout: 1)),
            ("read-two-segments", seed(indirect: false, 0, sector: 0, layout: 0x0a)),
            ("write-two-sectors", seed(indirect: false, 1, sector: 14, layout: 2, data: [UInt8](repeating: 0xab, count: 1024))),
            ("flush", seed(indirect: false, 2, sector: 0, layout: 0)),
            ("get-id", seed(indirect: false, 3, sector: 0, layout: 0x80, data: [20, 0])),
            ("read-past-end", seed(indirect: false, 0, sector: 16, layout: 1)),
            ("indirect-read", seed(indirect: true, 0, sector: 1, layout: 0x1b)),
        ]
    }
}
