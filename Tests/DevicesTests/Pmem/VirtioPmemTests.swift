import Devices
import GuestMemory
import Testing

/// virtio-pmem's config space and requests, through the real virtio-mmio transport and queue: a
/// flush and the shapes a hostile driver may send instead.
@Suite struct VirtioPmemTests {
    typealias Driver = VirtioTestDriver
    static let request: GuestAddress = 0x10000
    static let response: GuestAddress = 0x11000

    func setUp() throws -> (Driver, VirtioPmem) {
        let device = VirtioPmem(start: 0x20_0000_0000, size: 6 << 20)
        let driver = try Driver(device: device)
        #expect(driver.initialize())
        return (driver, device)
    }

    /// Publishes `buffers` as one chain; returns the used length, or nil when nothing was used.
    func submit(_ driver: Driver, _ buffers: [Driver.Buffer]) throws -> UInt32? {
        let before = driver.usedIndex
        try driver.publish(try driver.addChain(buffers))
        driver.notify()
        guard driver.usedIndex == before &+ 1 else { return nil }
        return try driver.usedElement(before).length
    }

    func request(_ driver: Driver, type: UInt32, requestLength: UInt32 = 4, responseLength: UInt32 = 4) throws -> (UInt32?, UInt32) {
        try driver.memory.store(type, at: Self.request)
        try driver.memory.store(UInt32(0xdead_beef), at: Self.response)
        var buffers = [Driver.Buffer(address: Self.request, length: requestLength, writable: false)]
        if responseLength > 0 { buffers.append(Driver.Buffer(address: Self.response, length: responseLength, writable: true)) }
        let used = try submit(driver, buffers)
        return (used, try driver.memory.load(UInt32.self, at: Self.response))
    }

    @Test func configSaysWhereTheRangeIsAndIgnoresWrites() throws {
        let (driver, _) = try setUp()
        #expect(driver.read(0x08) == Virtio.DeviceType.pmem)
        #expect(driver.read(0x100) == 0 && driver.read(0x104) == 0x20)
        #expect(driver.read(0x108) == 6 << 20 && driver.read(0x10c) == 0)
        driver.write(0x108, 1 << 30)
        #expect(driver.read(0x108) == 6 << 20)
        #expect(driver.read(0x110) == 0)
    }

    @Test func aFlushSucceedsAndAnUnknownTypeGetsAnIOError() throws {
        let (driver, device) = try setUp()
        #expect(try request(driver, type: 0) == (4, 0))
        #expect(try request(driver, type: 1) == (4, 1))
        #expect(device.flushCount == 1)
        #expect(!driver.needsReset)
    }

    @Test func malformedRequestsAreUsedWithNothingWritten() throws {
        let (driver, device) = try setUp()
        // No response buffer, a 2-byte type, a 2-byte response buffer.
        #expect(try request(driver, type: 0, responseLength: 0) == (0, 0xdead_beef))
        #expect(try request(driver, type: 0, requestLength: 2) == (0, 0xdead_beef))
        #expect(try request(driver, type: 0, responseLength: 2) == (0, 0xdead_beef))
        #expect(device.refusedCount == 3 && device.flushCount == 0)
        // The queue still serves the next good request.
        #expect(try request(driver, type: 0) == (4, 0))
        #expect(!driver.needsReset)
    }

    @Test func aThousandFlushesInARowAreEachAnswered() throws {
        let (driver, device) = try setUp()
        for _ in 0..<1000 { #expect(try request(driver, type: 0) == (4, 0)) }
        #expect(device.flushCount == 1000)
    }
}
