import DeviceFuzzing
import Devices
import FuzzSupport
import GuestMemory

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    VirtqueueTarget.run(FuzzInput(data, size))
    return 0
}

/// Split virtqueues as a hostile driver sets them up (Sources/Devices/Virtqueue.swift,
/// DescriptorChain.swift): ring addresses, size and indirect support from the input, then steps
/// that write any guest bytes (descriptors, ring indices, indirect tables) and let a device
/// consume the available chains, reading and writing their buffers at any offset and length
/// and returning any used length, or declining chains for later.
@main
enum VirtqueueTarget {
    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func address(_ input: inout FuzzInput) -> UInt64 {
        input.bool() ? input.integer() : UInt64(input.integer(UInt16.self))
    }

    static func run(_ input: FuzzInput) {
        var input = input
        FuzzGuest.resetMemory()
        let size = input.integer(UInt16.self)
        let descriptors = address(&input), driverArea = address(&input), deviceArea = address(&input)
        guard
            let queue = try? Virtqueue(
                index: 0, size: size, maxSize: 256, descriptorTable: GuestAddress(descriptors), driverArea: GuestAddress(driverArea),
                deviceArea: GuestAddress(deviceArea), memory: FuzzGuest.memory, indirectDescriptors: input.bool())
        else { return }
        for _ in 0..<64 where !input.isEmpty {
            switch input.byte() % 4 {
            case 0:
                FuzzGuest.hostileWrite(&input)
            case 1:
                _ = try? queue.processAvailable { chain throws(VirtqueueError) -> UInt32 in
                    consume(chain, &input)
                    return input.integer()
                }
            case 2:
                _ = try? queue.processAvailable(declining: { chain throws(VirtqueueError) -> UInt32? in
                    if input.bool() { return nil }
                    consume(chain, &input)
                    return input.integer()
                })
            default:
                if input.byte() == 0xff { queue.deactivate() }
            }
        }
    }

    /// A device's use of a chain: copies in and out at offsets and lengths from the input
    /// (negative and oversized ones included).
    static func consume(_ chain: DescriptorChain, _ input: inout FuzzInput) {
        for _ in 0..<Int(input.byte() % 4) {
            let offset = Int(input.integer(Int16.self))
            let count = Int(input.integer(Int16.self))
            switch input.byte() % 4 {
            case 0: _ = chain.readBytes(from: offset, count: count)
            case 1: _ = chain.writeBytes(input.bytes(Int(input.byte())), at: offset)
            case 2: _ = chain.readableSegments(from: offset, count: count).reduce(0) { $0 + $1.length }
            default: _ = chain.writableSegments(from: offset, count: count).reduce(0) { $0 + $1.length }
            }
        }
    }

    /// Rings as Linux lays them out (size 8: descriptors at 0, driver area at 0x400, device area
    /// at 0x800) holding a read-then-write chain, a chain through an indirect table, and a loop.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func descriptor(_ address: UInt64, _ length: UInt32, _ flags: UInt16, _ next: UInt16) -> [UInt8] {
            var builder = FuzzInputBuilder()
            builder.integer(address)
            builder.integer(length)
            builder.integer(flags)
            builder.integer(next)
            return builder.bytes
        }
        func queue(indirect: Bool, descriptors: [UInt8], extra: [(UInt16, [UInt8])] = [], heads: [UInt16]) -> [UInt8] {
            var builder = FuzzInputBuilder()
            builder.integer(UInt16(8))
            for area in [UInt16(0), 0x400, 0x800] {
                builder.byte(0)
                builder.integer(area)
            }
            builder.byte(indirect ? 1 : 0)
            builder.memoryWrite(0, descriptors)
            for (address, bytes) in extra { builder.memoryWrite(address, bytes) }
            var ring = FuzzInputBuilder()
            ring.integer(UInt16(0))
            ring.integer(UInt16(heads.count))
            for head in heads { ring.integer(head) }
            builder.memoryWrite(0x400, ring.bytes)
            builder.byte(1)  // consume: read 16 bytes at 0, write 4 bytes at 0
            for _ in heads {
                builder.byte(2)
                builder.integer(Int16(0))
                builder.integer(Int16(16))
                builder.byte(0)
                builder.integer(Int16(0))
                builder.integer(Int16(4))
                builder.byte(1)
                builder.byte(4)
                builder.append([1, 2, 3, 4])
                builder.integer(UInt32(4))
            }
            return builder.bytes
        }
        let readThenWrite = descriptor(0x4000, 16, 1, 1) + descriptor(0x5000, 512, 2, 0)
        let indirect = descriptor(0x3000, 32, 4, 0)
        let table = descriptor(0x4000, 16, 1, 1) + descriptor(0x5000, 64, 2, 0)
        let loop = descriptor(0x4000, 16, 1, 1) + descriptor(0x4010, 16, 1, 0)
        return [
            ("read-then-write", queue(indirect: false, descriptors: readThenWrite, heads: [0])),
            ("indirect", queue(indirect: true, descriptors: indirect, extra: [(0x3000, table)], heads: [0])),
            ("loop", queue(indirect: false, descriptors: loop, heads: [0])),
            (
                "two-chains",
                queue(
                    indirect: false, descriptors: readThenWrite + descriptor(0x6000, 16, 1, 3) + descriptor(0x7000, 8, 2, 0),
                    heads: [0, 2])
            ),
        ]
    }
}
