import Devices
import GuestMemory
import HostOS
import Testing

/// A hostile driver breaks the queue rules on purpose. The device must answer with an error
/// status or DEVICE_NEEDS_RESET, never crash or hang, and leave the disk alone.
@Suite struct HostileVirtqueueTests {
    typealias Driver = VirtioTestDriver
    static let outsideMemory: GuestAddress = 0x1_0000_0000

    let file: FileDescriptor
    let driver: Driver

    init() throws {
        file = try makeDisk(numberedSectors())
        driver = try Driver(device: try VirtioBlock(file: file, readOnly: false, identifier: "hostile"))
        #expect(driver.initialize())
    }

    /// The device stopped: NEEDS_RESET with a config-change interrupt, nothing used, disk intact,
    /// later notifications ignored, and a reset brings it back.
    func expectBrokenThenRecovers(sourceLocation: SourceLocation = #_sourceLocation) throws {
        #expect(driver.needsReset, sourceLocation: sourceLocation)
        #expect(driver.read(0x60) & 0x2 != 0, sourceLocation: sourceLocation)
        #expect(driver.interrupts.edges >= 1, sourceLocation: sourceLocation)
        #expect(driver.usedIndex == 0, sourceLocation: sourceLocation)
        driver.notify()
        #expect(driver.usedIndex == 0, sourceLocation: sourceLocation)
        #expect(try contents(of: file) == numberedSectors(), sourceLocation: sourceLocation)
        #expect(driver.initialize(), sourceLocation: sourceLocation)
        let read = try driver.blockRequest(type: Driver.typeRead, sector: 5, reading: 512)
        #expect(read?.status == Driver.statusOK && read?.data == [UInt8](repeating: 5, count: 512), sourceLocation: sourceLocation)
    }

    @Test func descriptorAddressOutsideGuestMemory() throws {
        try driver.writeRequestHeader(type: Driver.typeWrite, sector: 0)
        #expect(
            try driver.submit([
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: Self.outsideMemory, length: 512, writable: false),
                .init(address: Driver.statusByte, length: 1, writable: true),
            ]) == nil)
        try expectBrokenThenRecovers()
    }

    @Test func bufferStraddlingTheEndOfGuestMemory() throws {
        try driver.writeRequestHeader(type: Driver.typeRead, sector: 0)
        #expect(
            try driver.submit([
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: GuestAddress((1 << 20) - 256), length: 512, writable: true),
                .init(address: Driver.statusByte, length: 1, writable: true),
            ]) == nil)
        try expectBrokenThenRecovers()
    }

    @Test func descriptorLoop() throws {
        try driver.writeRequestHeader(type: Driver.typeFlush, sector: 0)
        try driver.writeDescriptor(0, address: Driver.requestHeader, length: 16, flags: 1, next: 1)
        try driver.writeDescriptor(1, address: Driver.statusByte, length: 1, flags: 1 | 2, next: 0)
        try driver.publish(0)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test func descriptorPointingToItself() throws {
        try driver.writeDescriptor(0, address: Driver.requestHeader, length: 16, flags: 1, next: 0)
        try driver.publish(0)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test func zeroLengthHeaderIsAnIOError() throws {
        try driver.writeRequestHeader(type: Driver.typeWrite, sector: 0)
        let done = try driver.submit([
            .init(address: Driver.requestHeader, length: 0, writable: false),
            .init(address: Driver.statusByte, length: 1, writable: true),
        ])
        #expect(done?.status == Driver.statusIOError)
        #expect(done?.usedLength == 1)
        #expect(try contents(of: file) == numberedSectors())
    }

    @Test func hugeLengthBeyondGuestMemory() throws {
        try driver.writeRequestHeader(type: Driver.typeRead, sector: 0)
        #expect(
            try driver.submit([
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: Driver.readData, length: .max, writable: true),
                .init(address: Driver.statusByte, length: 1, writable: true),
            ]) == nil)
        try expectBrokenThenRecovers()
    }

    /// Each buffer is inside memory, but together they exceed the 4 GiB a chain may hold.
    @Test func chainLongerThan4GiB() throws {
        let memory = try GuestMemory.anonymous([(base: 0, size: 4 << 30)])
        let big = try Driver(device: try VirtioBlock(file: file, readOnly: false, identifier: "big"), memory: memory)
        #expect(big.initialize())
        try big.writeRequestHeader(type: Driver.typeRead, sector: 0)
        #expect(
            try big.submit([
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: GuestAddress(1 << 20), length: 0xc000_0000, writable: true),
                .init(address: GuestAddress(1 << 20), length: 0xc000_0000, writable: true),
                .init(address: Driver.statusByte, length: 1, writable: true),
            ]) == nil)
        #expect(big.needsReset)
        #expect(try memory.load(UInt8.self, at: Driver.statusByte) == 0xff)
    }

    @Test func statusInADeviceReadableBuffer() throws {
        try driver.writeRequestHeader(type: Driver.typeRead, sector: 0)
        #expect(
            try driver.submit([
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: Driver.readData, length: 512, writable: true),
                .init(address: Driver.statusByte, length: 1, writable: false),
            ]) == nil)
        #expect(try driver.memory.load(UInt8.self, at: Driver.statusByte) == 0xff)
        try expectBrokenThenRecovers()
    }

    @Test func requestWithNoDeviceWritableByte() throws {
        try driver.writeRequestHeader(type: Driver.typeFlush, sector: 0)
        #expect(
            try driver.submit([
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: Driver.statusByte, length: 1, writable: false),
            ]) == nil)
        try expectBrokenThenRecovers()
    }

    /// Write data offered only as device-writable memory: the device writes nothing to disk.
    @Test func writeDataInADeviceWritableBufferIsNotWritten() throws {
        try driver.memory.write([UInt8](repeating: 0xee, count: 512), at: Driver.readData)
        try driver.writeRequestHeader(type: Driver.typeWrite, sector: 0)
        let done = try driver.submit([
            .init(address: Driver.requestHeader, length: 16, writable: false),
            .init(address: Driver.readData, length: 512, writable: true),
            .init(address: Driver.statusByte, length: 1, writable: true),
        ])
        #expect(done != nil)
        #expect(try contents(of: file) == numberedSectors())
    }

    @Test func availableIndexJumpingPastTheQueueSize() throws {
        try driver.memory.store(UInt16(driver.queueSize) + 5, at: Driver.availableRing + 2)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test func headIndexOutsideTheTable() throws {
        try driver.publish(200)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test func nextIndexOutsideTheTable() throws {
        try driver.writeRequestHeader(type: Driver.typeFlush, sector: 0)
        try driver.writeDescriptor(0, address: Driver.requestHeader, length: 16, flags: 1, next: 300)
        try driver.publish(0)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test func indirectDescriptorsThatWereNotNegotiated() throws {
        #expect(driver.initialize(features: driver.offeredFeatures & ~Virtio.Feature.indirectDescriptors))
        try driver.writeDescriptor(0, address: Driver.writeData, length: 32, flags: 4, next: 0)
        try driver.publish(0)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    static let indirectTable: GuestAddress = 0x50000

    func flushBuffers() throws -> [Driver.Buffer] {
        try driver.writeRequestHeader(type: Driver.typeFlush, sector: 0)
        return [
            .init(address: Driver.requestHeader, length: 16, writable: false),
            .init(address: Driver.statusByte, length: 1, writable: true),
        ]
    }

    @Test func indirectTableOutsideGuestMemory() throws {
        try driver.writeDescriptor(0, address: Self.outsideMemory, length: 32, flags: 4, next: 0)
        try driver.publish(0)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test(arguments: [UInt32(0), UInt32(24), UInt32(16 * 2048)])
    func indirectTableOfBadLength(length: UInt32) throws {
        _ = try driver.addIndirectChain(try flushBuffers(), tableAt: Self.indirectTable)
        try driver.writeDescriptor(0, address: Self.indirectTable, length: length, flags: 4, next: 0)
        try driver.publish(0)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test func indirectDescriptorInsideAnIndirectTable() throws {
        let head = try driver.addIndirectChain(try flushBuffers(), tableAt: Self.indirectTable)
        try driver.memory.store(UInt16(4), at: Self.indirectTable + 12)  // entry 0 becomes indirect
        try driver.publish(head)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test func loopInsideAnIndirectTable() throws {
        let head = try driver.addIndirectChain(try flushBuffers(), tableAt: Self.indirectTable)
        try driver.memory.store(UInt16(1 | 2), at: Self.indirectTable + 16 + 12)  // status entry: NEXT
        try driver.memory.store(UInt16(1), at: Self.indirectTable + 16 + 14)  // ... to itself
        try driver.publish(head)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    @Test(arguments: [UInt16(12), 0, 512])
    func queueSizeThatIsNotAPowerOf2OrTooLarge(size: UInt16) throws {
        #expect(!driver.initialize(queueSize: size))
        #expect(driver.needsReset)
        driver.write(0x30, 0)
        #expect(driver.read(0x44) == 0)
        #expect(driver.initialize(queueSize: 16))
    }

    /// Descriptor table, driver area and device area addresses.
    static let badRings: [[GuestAddress]] = [
        [outsideMemory, Driver.availableRing, Driver.usedRing],
        [Driver.descriptorTable, GuestAddress(UInt64.max - 1), Driver.usedRing],
        [Driver.descriptorTable, Driver.availableRing, GuestAddress((1 << 20) - 64)],
        [Driver.descriptorTable + 8, Driver.availableRing, Driver.usedRing],
        [Driver.descriptorTable, Driver.availableRing, Driver.usedRing + 2],
    ]

    @Test(arguments: badRings)
    func ringAddressesOutsideMemoryOrMisaligned(rings: [GuestAddress]) throws {
        #expect(!driver.initialize(descriptorTable: rings[0], availableRing: rings[1], usedRing: rings[2]))
        #expect(driver.needsReset)
        driver.notify()
        try expectBrokenThenRecovers()
    }

    /// Guest memory the device may only read (a read-only mapping): writing there would
    /// fault the VMM, so a device-writable buffer in it breaks the queue instead.
    @Test func deviceWritableBufferInReadOnlyGuestMemory() throws {
        let backing = try makeDisk([UInt8](repeating: 0x11, count: 4096))
        let memory = try GuestMemory(regions: [
            try GuestRegion(anonymousAt: 0, size: 1 << 20),
            try GuestRegion(file: backing, at: GuestAddress(1 << 20), size: 4096, shared: false, readOnly: true),
        ])
        let guarded = try Driver(device: try VirtioBlock(file: file, readOnly: false, identifier: "ro-ram"), memory: memory)
        #expect(guarded.initialize())
        try guarded.writeRequestHeader(type: Driver.typeRead, sector: 0)
        #expect(
            try guarded.submit([
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: GuestAddress(1 << 20), length: 512, writable: true),
                .init(address: Driver.statusByte, length: 1, writable: true),
            ]) == nil)
        #expect(guarded.needsReset)
        #expect(try memory.readBytes(at: GuestAddress(1 << 20), count: 512) == [UInt8](repeating: 0x11, count: 512))
        // A used ring there is refused when the queue is enabled.
        #expect(!guarded.initialize(usedRing: GuestAddress(1 << 20)))
    }
}
