import Devices
import Dispatch
import GuestMemory
import HostOS
import Testing

@Suite struct VirtioBlockTests {
    typealias Driver = VirtioTestDriver

    func setUp(readOnly: Bool = false, sectors: Int = 8) throws -> (Driver, FileDescriptor) {
        let file = try makeDisk(numberedSectors(sectors))
        let driver = try Driver(device: try VirtioBlock(file: file, readOnly: readOnly, identifier: "rund-disk-0"))
        #expect(driver.initialize())
        return (driver, file)
    }

    @Test func readsSectorZero() throws {
        let (driver, _) = try setUp()
        let done = try #require(try driver.blockRequest(type: Driver.typeRead, sector: 0, reading: 512))
        #expect(done.status == Driver.statusOK)
        #expect(done.usedLength == 513)
        #expect(done.data == [UInt8](repeating: 0, count: 512))
        #expect(driver.read(0x60) & 1 == 1)
        #expect(driver.interrupts.edges == 1)
        driver.write(0x64, 1)
        #expect(driver.read(0x60) == 0)
        let two = try #require(try driver.blockRequest(type: Driver.typeRead, sector: 6, reading: 1024))
        #expect(two.data == [UInt8](repeating: 6, count: 512) + [UInt8](repeating: 7, count: 512))
    }

    @Test func writeAndFlushReachTheFileAndReadBack() throws {
        let (driver, file) = try setUp()
        let payload = (0..<1024).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let wrote = try #require(try driver.blockRequest(type: Driver.typeWrite, sector: 2, writing: payload))
        #expect(wrote.status == Driver.statusOK)
        #expect(wrote.usedLength == 1)
        #expect(try driver.blockRequest(type: Driver.typeFlush)?.status == Driver.statusOK)
        let host = try contents(of: file)
        #expect(Array(host[1024..<2048]) == payload)
        #expect(Array(host[512..<1024]) == [UInt8](repeating: 1, count: 512))
        #expect(Array(host[2048..<2560]) == [UInt8](repeating: 4, count: 512))
        let back = try #require(try driver.blockRequest(type: Driver.typeRead, sector: 2, reading: 1024))
        #expect(back.data == payload)
    }

    @Test func getIDReturnsTheIdentifierPaddedTo20Bytes() throws {
        let (driver, _) = try setUp()
        let done = try #require(try driver.blockRequest(type: Driver.typeGetID, reading: 20))
        #expect(done.status == Driver.statusOK)
        #expect(done.usedLength == 21)
        #expect(done.data == Array("rund-disk-0".utf8) + [UInt8](repeating: 0, count: 9))
    }

    @Test func readOnlyDiskRefusesWritesAndKeepsTheFile() throws {
        let (driver, file) = try setUp(readOnly: true)
        let done = try #require(try driver.blockRequest(type: Driver.typeWrite, sector: 0, writing: [UInt8](repeating: 0xee, count: 512)))
        #expect(done.status == Driver.statusIOError)
        #expect(try contents(of: file) == numberedSectors())
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: 1, reading: 512)?.status == Driver.statusOK)
    }

    @Test func sectorsBeyondCapacityAreIOErrors() throws {
        let (driver, file) = try setUp(sectors: 8)
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: 8, reading: 512)?.status == Driver.statusIOError)
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: 7, reading: 1024)?.status == Driver.statusIOError)
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: .max, reading: 512)?.status == Driver.statusIOError)
        let write = try driver.blockRequest(type: Driver.typeWrite, sector: (.max / 512) + 1, writing: [UInt8](repeating: 1, count: 512))
        #expect(write?.status == Driver.statusIOError)
        // Data that is not whole sectors.
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: 0, reading: 100)?.status == Driver.statusIOError)
        #expect(try contents(of: file) == numberedSectors())
        #expect(!driver.needsReset)
    }

    @Test func unknownRequestTypesAreUnsupported() throws {
        let (driver, _) = try setUp()
        let done = try #require(try driver.blockRequest(type: 11, sector: 0, writing: [UInt8](repeating: 0, count: 16)))
        #expect(done.status == Driver.statusUnsupported)
    }

    /// The device must not assume one descriptor per part (VIRTIO_F_ANY_LAYOUT is implied).
    @Test func requestsSplitAcrossDescriptorsInAnyLayoutWork() throws {
        let (driver, file) = try setUp()
        try driver.memory.write([UInt8](repeating: 0xab, count: 512), at: Driver.requestHeader + 16)
        try driver.writeRequestHeader(type: Driver.typeWrite, sector: 3)
        let wrote = try driver.submit([
            .init(address: Driver.requestHeader, length: 10, writable: false),
            .init(address: Driver.requestHeader + 10, length: 16 + 512 - 10, writable: false),
            .init(address: Driver.statusByte, length: 1, writable: true),
        ])
        #expect(wrote?.status == Driver.statusOK)
        #expect(Array(try contents(of: file)[1536..<2048]) == [UInt8](repeating: 0xab, count: 512))
        // Read data and status in one writable buffer: status is its last byte.
        try driver.writeRequestHeader(type: Driver.typeRead, sector: 1)
        let read = try driver.submit([
            .init(address: Driver.requestHeader, length: 16, writable: false),
            .init(address: Driver.readData, length: 100, writable: true),
            .init(address: Driver.readData + 100, length: 413, writable: true),
        ])
        #expect(read?.usedLength == 513)
        #expect(try driver.memory.readBytes(at: Driver.readData, count: 512) == [UInt8](repeating: 1, count: 512))
        #expect(try driver.memory.load(UInt8.self, at: Driver.readData + 512) == Driver.statusOK)
    }

    @Test func requestInAnIndirectTable() throws {
        let (driver, _) = try setUp()
        try driver.writeRequestHeader(type: Driver.typeRead, sector: 4)
        let head = try driver.addIndirectChain(
            [
                .init(address: Driver.requestHeader, length: 16, writable: false),
                .init(address: Driver.readData, length: 256, writable: true),
                .init(address: Driver.readData + 256, length: 256, writable: true),
                .init(address: Driver.statusByte, length: 1, writable: true),
            ], tableAt: 0x50000)
        try driver.publish(head)
        driver.notify()
        #expect(driver.usedIndex == 1)
        #expect(try driver.usedElement(0) == (id: UInt32(head), length: 513))
        #expect(try driver.memory.load(UInt8.self, at: Driver.statusByte) == Driver.statusOK)
        #expect(try driver.memory.readBytes(at: Driver.readData, count: 512) == [UInt8](repeating: 4, count: 512))
    }

    /// The 16-bit ring indices wrap; the device must keep counting across the wrap.
    @Test func ringIndicesWrapAround() throws {
        let (driver, _) = try setUp()
        try driver.writeRequestHeader(type: Driver.typeGetID, sector: 0)
        let buffers: [Driver.Buffer] = [
            .init(address: Driver.requestHeader, length: 16, writable: false),
            .init(address: Driver.readData, length: 20, writable: true),
            .init(address: Driver.statusByte, length: 1, writable: true),
        ]
        // Four 3-descriptor chains per notify fit the 16-entry table without reuse.
        for _ in 0..<(65536 / 4 + 8) {
            for _ in 0..<4 { try driver.publish(try driver.addChain(buffers)) }
            driver.notify()
        }
        #expect(driver.availableIndex == 32)
        #expect(driver.usedIndex == 32)
        #expect(!driver.needsReset)
        #expect(try driver.usedElement(31).length == 21)
        #expect(try driver.memory.load(UInt8.self, at: Driver.statusByte) == Driver.statusOK)
    }

    /// Several vCPU threads notifying at once: every request is served exactly once.
    @Test func concurrentNotificationsServeEachRequestOnce() throws {
        let (driver, _) = try setUp()
        try driver.writeRequestHeader(type: Driver.typeFlush, sector: 0)
        for _ in 0..<8 {
            try driver.publish(
                try driver.addChain([
                    .init(address: Driver.requestHeader, length: 16, writable: false),
                    .init(address: Driver.statusByte, length: 1, writable: true),
                ]))
        }
        let transport = driver.transport
        DispatchQueue.concurrentPerform(iterations: 4) { _ in transport.notifyQueue(0) }
        #expect(driver.usedIndex == 8)
        #expect(!driver.needsReset)
    }

    /// A pod's later container: an empty drive gets a medium while the driver runs, and loses it.
    @Test func anEmptyDriveServesAnInsertedMediumAndFailsAfterItIsEjected() throws {
        let device = VirtioBlock(emptyReadOnly: false, identifier: "rund-disk-1")
        let driver = try Driver(device: device)
        #expect(driver.initialize())
        #expect(driver.read(0x100) == 0)  // Capacity, low word: empty.
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: 0, reading: 512)?.status == Driver.statusIOError)
        #expect(try device.insertMedium(try makeDisk(numberedSectors(8))) == 8)
        #expect(driver.read(0x100) == 8)
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: 3, reading: 512)?.data == [UInt8](repeating: 3, count: 512))
        device.ejectMedium()
        #expect(device.capacity == 0)
        #expect(driver.read(0x100) == 0)
        #expect(try driver.blockRequest(type: Driver.typeRead, sector: 3, reading: 512)?.status == Driver.statusIOError)
    }
}
