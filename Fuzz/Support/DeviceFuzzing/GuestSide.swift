#if canImport(Glibc)
import Glibc
#endif
import Devices
import FuzzSupport
import GuestMemory
import HostOS
import Logging

/// The guest the device targets play: its RAM, whose every byte the input controls, and a
/// driver that lays out virtqueues the way Linux does so inputs reach past queue setup. Nothing
/// here checks what the device does; the devices are the code under test, the fuzzer watches
/// for traps and hangs.
public enum FuzzGuest {
    /// Guest RAM: [0, 64 KiB), plus a read-only page at 0x10000 (device-writable buffers there
    /// must be refused, never written).
    public static let ramBytes = 64 << 10
    public static let readOnlyBase: UInt64 = 0x10000

    public static let memory: GuestMemory = {
        let readOnlyFile = anonymousFile(size: 4096)
        return try! GuestMemory(regions: [
            try GuestRegion(anonymousAt: 0, size: ramBytes),
            try GuestRegion(file: readOnlyFile, at: GuestAddress(readOnlyBase), size: 4096, shared: true, readOnly: true),
        ])
    }()

    /// An unlinked file in tmpfs (fsync is free there) of `size` zero bytes, for a disk or a
    /// file-backed region.
    public static func anonymousFile(size: Int) -> FileDescriptor {
        var template = Array("/dev/shm/rund-fuzz-XXXXXX".utf8CString)
        let raw = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        precondition(raw >= 0, "mkstemp failed")
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        _ = ftruncate(raw, off_t(size))
        return FileDescriptor(adopting: raw)
    }

    /// A hostile write of any bytes to any guest address (RAM or not), read from `input`.
    public static func hostileWrite(_ input: inout FuzzInput) {
        let address = UInt64(input.integer(UInt16.self))
        let bytes = input.bytes(Int(input.byte()))
        try? memory.write(bytes, at: GuestAddress(address))
    }

    /// Every input starts from zeroed RAM.
    public static func resetMemory() {
        try! memory.zero(at: 0, length: ramBytes)
    }

    /// Logs nothing: a hostile guest's every mistake is logged, and printing would drown the
    /// fuzzer's own output and slow it.
    public static let quietLogger = Logger(label: "fuzz") { _ in SwiftLogNoOpLogHandler() }

    // Fixed places for a well-behaved driver's structures.
    static func queueBase(_ index: Int) -> UInt64 { UInt64(index) * 0x1000 }
    static let indirectTables: ClosedRange<UInt64> = 0x3000...0x3fff
    static let buffers: ClosedRange<UInt64> = 0x4000...0xffff
}

/// An interrupt wire nobody listens to.
public final class IgnoredInterrupt: InterruptLine {
    public init() {}
    public func trigger() {}
}

/// One buffer of a chain as the driver hands it to the device.
public struct GuestBuffer {
    public var address: UInt64
    public var length: UInt32
    public var deviceWritable: Bool

    public init(address: UInt64, length: UInt32, deviceWritable: Bool) {
        self.address = address
        self.length = length
        self.deviceWritable = deviceWritable
    }
}

/// A split virtqueue laid out by a well-behaved driver at `FuzzGuest.queueBase(index)`: the
/// descriptor table, then the available ring at +0x400 and the used ring at +0x800.
public struct DriverQueue {
    public static let maxSize: UInt16 = 64
    public let index: Int
    public let size: UInt16
    public var descriptorTable: UInt64 { FuzzGuest.queueBase(index) }
    public var availableRing: UInt64 { FuzzGuest.queueBase(index) + 0x400 }
    public var usedRing: UInt64 { FuzzGuest.queueBase(index) + 0x800 }
    private var nextDescriptor: UInt16 = 0
    private var availableIndex: UInt16 = 0
    private var nextIndirectTable = FuzzGuest.indirectTables.lowerBound

    /// `size` is what the driver will write to QueueSize; a size the device refuses is part of
    /// the game, but only sizes up to `maxSize` fit the fixed layout.
    public init(index: Int, size: UInt16) {
        self.index = index
        self.size = min(size, Self.maxSize)
    }

    /// Publishes one chain: descriptors in the table (or in an indirect table), its head in the
    /// available ring, then the new available index.
    public mutating func post(_ buffers: [GuestBuffer], indirect: Bool) {
        guard size > 0, !buffers.isEmpty else { return }
        let memory = FuzzGuest.memory
        let head = nextDescriptor % size
        if indirect {
            let length = UInt64(16 * buffers.count)
            if nextIndirectTable + length > FuzzGuest.indirectTables.upperBound + 1 {
                nextIndirectTable = FuzzGuest.indirectTables.lowerBound
            }
            guard nextIndirectTable + length <= FuzzGuest.indirectTables.upperBound + 1 else { return }
            for (i, buffer) in buffers.enumerated() {
                Self.writeDescriptor(
                    at: nextIndirectTable + UInt64(16 * i), buffer, next: UInt16(truncatingIfNeeded: i + 1),
                    last: i == buffers.count - 1)
            }
            Self.writeDescriptor(
                at: descriptorTable + 16 * UInt64(head),
                GuestBuffer(address: nextIndirectTable, length: UInt32(length), deviceWritable: false),
                next: 0, last: true, flags: 4)
            nextIndirectTable += length
            nextDescriptor &+= 1
        } else {
            for (i, buffer) in buffers.enumerated() {
                let slot = (nextDescriptor &+ UInt16(truncatingIfNeeded: i)) % size
                let next = (slot &+ 1) % size
                Self.writeDescriptor(at: descriptorTable + 16 * UInt64(slot), buffer, next: next, last: i == buffers.count - 1)
            }
            nextDescriptor &+= UInt16(truncatingIfNeeded: buffers.count)
        }
        try? memory.store(UInt16(head), at: GuestAddress(availableRing + 4 + 2 * UInt64(availableIndex % size)))
        availableIndex &+= 1
        try? memory.store(availableIndex, at: GuestAddress(availableRing + 2))
    }

    private static func writeDescriptor(at address: UInt64, _ buffer: GuestBuffer, next: UInt16, last: Bool, flags extra: UInt16 = 0) {
        let memory = FuzzGuest.memory
        let flags = (last ? 0 : 1) | (buffer.deviceWritable ? 2 : 0) | extra
        try? memory.store(buffer.address, at: GuestAddress(address))
        try? memory.store(buffer.length, at: GuestAddress(address + 8))
        try? memory.store(flags, at: GuestAddress(address + 12))
        try? memory.store(next, at: GuestAddress(address + 14))
    }
}

/// Bump allocation in the buffer area; wraps around, as buffers are used by the time it does.
public struct BufferArena {
    private var next = FuzzGuest.buffers.lowerBound

    public init() {}

    /// Room for `length` bytes (at most the whole arena), filled with `contents` if given.
    public mutating func allocate(_ length: Int, contents: [UInt8] = []) -> UInt64 {
        let length = UInt64(min(max(length, 0), Int(FuzzGuest.buffers.count)))
        if next + length > FuzzGuest.buffers.upperBound + 1 { next = FuzzGuest.buffers.lowerBound }
        let address = next
        next += length
        if !contents.isEmpty { try? FuzzGuest.memory.write(Array(contents.prefix(Int(length))), at: GuestAddress(address)) }
        return address
    }
}

/// The driver side of one virtio-mmio device: register accesses as a vCPU makes them.
public struct MMIODriver {
    public let transport: VirtioMMIOTransport

    public init(_ transport: VirtioMMIOTransport) {
        self.transport = transport
    }

    public func write(_ offset: UInt64, _ value: UInt32, width: Int = 4) {
        withUnsafeBytes(of: value.littleEndian) { transport.write(offset: offset, UnsafeRawBufferPointer(rebasing: $0[0..<min(width, 4)])) }
    }

    public func read(_ offset: UInt64, width: Int = 4) -> UInt32 {
        var value: UInt32 = 0
        withUnsafeMutableBytes(of: &value) {
            transport.read(offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<min(width, 4)]))
        }
        return value
    }

    /// The Linux driver's init sequence (spec 3.1.1): ACKNOWLEDGE, DRIVER, features,
    /// FEATURES_OK, the queues, DRIVER_OK. `features` is what the driver claims to accept.
    public func initialize(features: UInt64, queues: [DriverQueue]) {
        write(0x070, 0)
        write(0x070, 1)
        write(0x070, 3)
        write(0x024, 0)
        write(0x020, UInt32(truncatingIfNeeded: features))
        write(0x024, 1)
        write(0x020, UInt32(truncatingIfNeeded: features >> 32))
        write(0x070, 0xb)
        for queue in queues {
            write(0x030, UInt32(queue.index))
            write(0x038, UInt32(queue.size))
            write(0x080, UInt32(truncatingIfNeeded: queue.descriptorTable))
            write(0x084, UInt32(truncatingIfNeeded: queue.descriptorTable >> 32))
            write(0x090, UInt32(truncatingIfNeeded: queue.availableRing))
            write(0x094, UInt32(truncatingIfNeeded: queue.availableRing >> 32))
            write(0x0a0, UInt32(truncatingIfNeeded: queue.usedRing))
            write(0x0a4, UInt32(truncatingIfNeeded: queue.usedRing >> 32))
            write(0x044, 1)
        }
        write(0x070, 0xf)
    }

    public func notify(_ queue: Int) {
        write(0x050, UInt32(truncatingIfNeeded: queue))
    }

    /// What a hostile driver may do besides using its queues: write any guest byte, or access
    /// any register with any width. Consumes an operation from `input`.
    public func hostileStep(_ input: inout FuzzInput) {
        switch input.byte() % 3 {
        case 0:
            FuzzGuest.hostileWrite(&input)
        case 1:
            let offset = UInt64(input.integer(UInt16.self) & 0x1ff)
            let width = [1, 2, 4, 3][Int(input.byte() % 4)]
            write(offset, input.integer(UInt32.self), width: width)
        default:
            let offset = UInt64(input.integer(UInt16.self) & 0x1ff)
            _ = read(offset, width: [1, 2, 4, 3][Int(input.byte() % 4)])
        }
    }
}

/// Builds the hostile steps `MMIODriver.hostileStep` reads, for seeds.
extension FuzzInputBuilder {
    public mutating func memoryWrite(_ address: UInt16, _ bytes: [UInt8]) {
        byte(0)
        integer(address)
        byte(UInt8(min(bytes.count, 255)))
        append(Array(bytes.prefix(255)))
    }

    public mutating func registerWrite(_ offset: UInt16, _ value: UInt32) {
        byte(1)
        integer(offset)
        byte(2)
        integer(value)
    }
}
