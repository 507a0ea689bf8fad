import Devices
import GuestMemory
import Logging
import Testing

/// The guest's vCPUs write the rings while the device reads them, so the device accesses ring
/// fields only with single atomic loads and stores, which need the spec's alignment (descriptor
/// table 16, driver area 2, device area 4). A driver that places a ring anywhere else gets its
/// queue refused when it enables it, before the device reads or writes a byte of it.
@Suite struct QueueAlignmentTests {
    typealias Driver = VirtioTestDriver

    struct Rings: Sendable, CustomTestStringConvertible {
        let descriptorTable: GuestAddress
        let availableRing: GuestAddress
        let usedRing: GuestAddress
        let message: String
        var testDescription: String { message }
    }

    static let misplaced = [
        Rings(
            descriptorTable: 0x1008, availableRing: Driver.availableRing, usedRing: Driver.usedRing,
            message: "descriptor table at 0x1008 is not 16-byte aligned"),
        Rings(
            descriptorTable: Driver.descriptorTable, availableRing: 0x2001, usedRing: Driver.usedRing,
            message: "driver area at 0x2001 is not 2-byte aligned"),
        Rings(
            descriptorTable: Driver.descriptorTable, availableRing: Driver.availableRing, usedRing: 0x3002,
            message: "device area at 0x3002 is not 4-byte aligned"),
    ]

    /// Through the real transport: the queue stays disabled, the device needs a reset, the log
    /// names the area and the alignment, and a request published in the misplaced rings is never
    /// served (the used ring stays untouched, the status byte unwritten).
    @Test(arguments: misplaced)
    func aMisalignedRingIsRefusedThroughTheTransportAndNeverAccessed(rings: Rings) throws {
        let lines = CollectingLogHandler.Lines()
        let logger = Logger(label: "test") { _ in CollectingLogHandler(lines: lines) }
        let disk = try VirtioBlock(file: try makeDisk(numberedSectors()), readOnly: false, identifier: "aligned", logger: logger)
        let driver = try Driver(device: disk, logger: logger)
        #expect(!driver.initialize(descriptorTable: rings.descriptorTable, availableRing: rings.availableRing, usedRing: rings.usedRing))
        #expect(driver.needsReset)
        driver.write(0x30, 0)
        #expect(driver.read(0x44) == 0)  // QueueReady stays 0
        #expect(lines.all.contains { $0.contains("device needs reset: queue 0: \(rings.message)") }, "\(lines.all)")

        // A FLUSH request laid out in the misplaced rings, published and notified.
        try driver.writeRequestHeader(type: Driver.typeFlush, sector: 0)
        let chain: [(GuestAddress, UInt32, UInt16)] = [(Driver.requestHeader, 16, 1), (Driver.statusByte, 1, 2)]
        for (index, (address, length, flags)) in chain.enumerated() {
            let entry = rings.descriptorTable + 16 * UInt64(index)
            try driver.memory.store(address.rawValue, at: entry)
            try driver.memory.store(length, at: entry + 8)
            try driver.memory.store(flags, at: entry + 12)
            try driver.memory.store(UInt16(index + 1), at: entry + 14)
        }
        try driver.memory.store(UInt16(0), at: rings.availableRing + 4)
        try driver.memory.store(UInt16(1), at: rings.availableRing + 2)
        let usedBefore = try driver.memory.readBytes(at: rings.usedRing, count: 6 + 8 * 16)
        driver.notify()
        #expect(try driver.memory.readBytes(at: rings.usedRing, count: 6 + 8 * 16) == usedBefore)
        #expect(try driver.memory.load(UInt8.self, at: Driver.statusByte) == 0xff)

        // A reset and well-placed rings bring the device back.
        #expect(driver.initialize())
        #expect(try driver.blockRequest(type: Driver.typeFlush)?.status == Driver.statusOK)
    }

    /// The same check on `Virtqueue` itself, with the typed error a transport turns into its log line.
    @Test func virtqueueRefusesEachMisalignedAreaWithATypedError() throws {
        let memory = try GuestMemory.anonymous([(base: 0, size: 1 << 20)])
        func queue(_ rings: Rings) throws(VirtqueueError) -> Virtqueue {
            try Virtqueue(
                index: 0, size: 16, maxSize: 256, descriptorTable: rings.descriptorTable,
                driverArea: rings.availableRing, deviceArea: rings.usedRing, memory: memory)
        }
        #expect(throws: VirtqueueError.misaligned(area: "descriptor table", address: 0x1008, alignment: 16)) {
            try queue(Self.misplaced[0])
        }
        #expect(throws: VirtqueueError.misaligned(area: "driver area", address: 0x2001, alignment: 2)) {
            try queue(Self.misplaced[1])
        }
        #expect(throws: VirtqueueError.misaligned(area: "device area", address: 0x3002, alignment: 4)) {
            try queue(Self.misplaced[2])
        }
        let aligned = try queue(Rings(descriptorTable: 0x1000, availableRing: 0x2002, usedRing: 0x3004, message: ""))
        #expect(aligned.descriptorTable == 0x1000 && aligned.availableRing == 0x2002 && aligned.usedRing == 0x3004)
    }
}
