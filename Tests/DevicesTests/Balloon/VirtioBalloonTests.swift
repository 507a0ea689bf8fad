import Devices
import GuestMemory
import Testing

/// virtio-balloon through the real virtio-mmio transport and queues, in real (anonymous) guest
/// memory: the config space, the host's target, and what the guest may send instead of PFNs and
/// free page runs.
@Suite struct VirtioBalloonTests {
    typealias Driver = VirtioTestDriver
    static let pfns: GuestAddress = 0x10000
    /// Data pages the tests give back: the upper half of a 4 MiB guest.
    static let data: GuestAddress = 0x20_0000

    func setUp() throws -> (Driver, VirtioBalloon) {
        let memory = try GuestMemory.anonymous([(base: 0, size: 4 << 20)])
        let balloon = VirtioBalloon(memory: memory)
        let driver = try Driver(device: balloon, memory: memory)
        #expect(driver.initialize(features: Virtio.Feature.version1 | VirtioBalloon.Feature.pageReporting, queueCount: 3))
        balloon.onConfigurationChange { [transport = driver.transport] in transport.configurationChanged() }
        try memory.write([UInt8](repeating: 0xaa, count: 2 << 20), at: Self.data)
        return (driver, balloon)
    }

    func submit(_ driver: Driver, queue: Int, _ buffers: [Driver.Buffer]) throws {
        try driver.publish(try driver.addChain(buffers, queue: queue), queue: queue)
        driver.notify(queue: UInt32(queue))
    }

    func inflate(_ driver: Driver, _ pfns: [UInt32]) throws {
        for (i, pfn) in pfns.enumerated() { try driver.memory.store(pfn, at: Self.pfns + UInt64(4 * i)) }
        try submit(driver, queue: 0, [Driver.Buffer(address: Self.pfns, length: UInt32(4 * pfns.count), writable: false)])
    }

    @Test func theTargetIsClampedToTheGuestsPagesAndInterrupts() throws {
        let (driver, balloon) = try setUp()
        #expect(driver.read(0x100) == 0)
        let before = driver.interrupts.edges
        balloon.setTarget(pages: 100)
        #expect(driver.read(0x100) == 100)
        #expect(driver.read(0x60) & Virtio.Interrupt.configChange != 0)
        #expect(driver.interrupts.edges == before + 1)
        balloon.setTarget(pages: .max)
        #expect(driver.read(0x100) == 1024)
        // Only `actual` is the driver's: num_pages and the rest ignore its writes.
        driver.write(0x100, 7)
        driver.write(0x104, 9)
        driver.write(0x108, 9)
        #expect(driver.read(0x100) == 1024 && driver.read(0x104) == 9 && driver.read(0x108) == 0)
        #expect(balloon.reportedBalloonPages == 9)
    }

    @Test func inflatedPagesReadZeroAndDuplicatesOrStrangersChangeNothingElse() throws {
        let (driver, balloon) = try setUp()
        let first = UInt32(Self.data.rawValue >> 12)
        try inflate(driver, [first + 2, first, first + 1, first + 1, 0x7fff_ffff, 0xffff_ffff])
        #expect(driver.usedIndex(queue: 0) == 1)
        #expect(try driver.memory.readBytes(at: Self.data, count: 3 * 4096).allSatisfy { $0 == 0 })
        #expect(try driver.memory.readBytes(at: Self.data + 3 * 4096, count: 4096).allSatisfy { $0 == 0xaa })
        #expect(balloon.discardedByteCount == 3 * 4096 && balloon.skippedRangeCount == 2)
        #expect(!driver.needsReset)
    }

    @Test func moreThanAChainsWorthOfPFNsIsCut() throws {
        let (driver, balloon) = try setUp()
        let first = UInt32(Self.data.rawValue >> 12)
        try inflate(driver, (0..<256).map { first + $0 } + [first + 256])
        #expect(driver.usedIndex(queue: 0) == 1)
        #expect(balloon.discardedByteCount == 256 * 4096)
        #expect(try driver.memory.readBytes(at: Self.data + 256 * 4096, count: 1).first == 0xaa)
    }

    @Test func reportedRunsAreGivenBackAndMisalignedOnesSkipped() throws {
        let (driver, balloon) = try setUp()
        try submit(
            driver, queue: 2,
            [
                Driver.Buffer(address: Self.data, length: 8192, writable: true),
                Driver.Buffer(address: Self.data + 0x5100, length: 4096, writable: true),
            ])
        #expect(driver.usedIndex(queue: 2) == 1)
        #expect(try driver.usedElement(0, queue: 2).length == 0)
        #expect(try driver.memory.readBytes(at: Self.data, count: 8192).allSatisfy { $0 == 0 })
        #expect(try driver.memory.readBytes(at: Self.data + 0x5100, count: 4096).allSatisfy { $0 == 0xaa })
        #expect(balloon.discardedByteCount == 8192 && balloon.skippedRangeCount == 1)
    }

    @Test func withoutPageReportingNegotiatedTheThirdQueueDiscardsNothing() throws {
        let memory = try GuestMemory.anonymous([(base: 0, size: 4 << 20)])
        let balloon = VirtioBalloon(memory: memory)
        let driver = try Driver(device: balloon, memory: memory)
        #expect(driver.initialize(features: Virtio.Feature.version1, queueCount: 3))
        try memory.write([UInt8](repeating: 0xaa, count: 8192), at: Self.data)
        try submit(driver, queue: 2, [Driver.Buffer(address: Self.data, length: 8192, writable: true)])
        #expect(try memory.readBytes(at: Self.data, count: 8192).allSatisfy { $0 == 0xaa })
        #expect(balloon.discardedByteCount == 0)
    }
}
