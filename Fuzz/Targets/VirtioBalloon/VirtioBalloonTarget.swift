import DeviceFuzzing
import Devices
import FuzzSupport

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    VirtioBalloonTarget.run(FuzzInput(data, size))
    return 0
}

/// A guest driving virtio-balloon (Sources/Devices/Balloon) through the real virtio-mmio
/// transport and virtqueues: inflate and deflate chains of page frame numbers (any count, any
/// frame, outside RAM and in the read-only page included, buffers split anywhere), free page
/// reports of any range (outside RAM, misaligned, overlapping the read-only page or the queues
/// themselves), config writes of `actual`, the host moving its target, notifies of any queue,
/// writes to any guest byte or register. Discarding the fuzz guest's RAM is harmless: every
/// input starts from zeroed memory.
@main
enum VirtioBalloonTarget {
    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        FuzzGuest.resetMemory()
        let device = VirtioBalloon(memory: FuzzGuest.memory, logger: FuzzGuest.quietLogger)
        let driver = MMIODriver(
            VirtioMMIOTransport(device: device, memory: FuzzGuest.memory, interrupt: IgnoredInterrupt(), logger: FuzzGuest.quietLogger))
        let claim = input.byte()
        var features: UInt64 = 1 << 32
        if claim & 1 != 0 { features |= 1 << 28 }  // indirect descriptors
        if claim & 2 != 0 { features |= device.offeredFeatures }
        if claim & 4 != 0 { features |= UInt64(input.integer(UInt32.self)) }  // maybe bits never offered
        let sizes: [UInt16] = [64, 16, 8, 1, 0, 3, 32, 2]
        var queues = (0..<3).map { DriverQueue(index: $0, size: sizes[Int(input.byte() % 8)]) }
        driver.initialize(features: features, queues: queues)
        var arena = BufferArena()
        for _ in 0..<64 where !input.isEmpty {
            switch input.byte() % 6 {
            case 0:
                // Inflate or deflate: le32 frame numbers, a few in RAM, any others.
                let index = Int(input.byte() % 2)
                queues[index].post(frames(&input, &arena), indirect: input.bool())
                driver.notify(index)
            case 1:
                // A free page report: writable buffers naming the ranges given back.
                var buffers: [GuestBuffer] = []
                for _ in 0..<(1 + Int(input.byte() % 4)) {
                    let address: UInt64 = input.bool() ? UInt64(input.integer(UInt16.self)) & ~0xfff : input.integer()
                    buffers.append(GuestBuffer(address: address, length: input.integer(), deviceWritable: !input.bool()))
                }
                queues[2].post(buffers, indirect: input.bool())
                driver.notify(2)
            case 2:
                device.setTarget(pages: input.integer())
            case 3:
                // The config space: num_pages (read-only) and actual, any offset and width.
                let offset = 0x100 + UInt64(input.byte() % 16)
                if input.bool() {
                    driver.write(offset, input.integer(UInt32.self), width: [1, 2, 4, 3][Int(input.byte() % 4)])
                } else {
                    _ = driver.read(offset, width: [1, 2, 4, 3][Int(input.byte() % 4)])
                }
            case 4:
                driver.notify(Int(input.byte()))
            default:
                driver.hostileStep(&input)
            }
        }
    }

    /// A chain of le32 page frame numbers as Linux's balloon sends them (up to 256 a chain;
    /// the input may ask for more), split over one to three buffers.
    static func frames(_ input: inout FuzzInput, _ arena: inout BufferArena) -> [GuestBuffer] {
        let count = input.bool() ? Int(input.byte() % 16) : Int(input.integer(UInt16.self) % 600)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 4)
        for _ in 0..<count {
            let frame: UInt32 = input.bool() ? UInt32(input.byte() % 17) : input.integer()  // 16: the read-only page
            withUnsafeBytes(of: frame.littleEndian) { bytes.append(contentsOf: $0) }
        }
        let pieces = 1 + Int(input.byte() % 3)
        var buffers: [GuestBuffer] = []
        var offset = 0
        for piece in 0..<pieces {
            let length = piece == pieces - 1 ? bytes.count - offset : bytes.count / pieces
            let slice = Array(bytes[offset..<(offset + length)])
            buffers.append(
                GuestBuffer(address: arena.allocate(length, contents: slice), length: UInt32(length), deviceWritable: input.bool()))
            offset += length
        }
        return buffers
    }

    /// Linux's own traffic: inflating four pages, deflating them, and a report of 16 KiB.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        var builder = FuzzInputBuilder()
        builder.byte(3)  // indirect + every offered feature
        builder.byte(0)
        builder.byte(0)
        builder.byte(0)  // three queues of 64
        builder.byte(2)  // the host sets a target
        builder.integer(UInt32(4))
        for queue: UInt8 in [0, 1] {
            builder.byte(0)  // inflate or deflate
            builder.byte(queue)
            builder.byte(1)  // a few frames
            builder.byte(4)
            for frame: UInt8 in [4, 5, 6, 7] {
                builder.byte(1)
                builder.byte(frame)
            }
            builder.byte(0)  // one buffer
            builder.byte(0)  // read-only buffer
            builder.byte(0)  // direct
        }
        builder.byte(1)  // a report
        builder.byte(0)  // one range
        builder.byte(1)
        builder.integer(UInt16(0x8000))
        builder.integer(UInt32(0x4000))
        builder.byte(0)  // device-writable
        builder.byte(0)  // direct
        return [("inflate-deflate-report", builder.bytes)]
    }
}
