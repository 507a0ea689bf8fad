import Devices
import GuestMemory
import Testing

@Suite struct VirtioMMIOTransportTests {
    func driver(readOnly: Bool = false, sectors: Int = 8) throws -> VirtioTestDriver {
        let disk = try VirtioBlock(file: try makeDisk(numberedSectors(sectors)), readOnly: readOnly, identifier: "disk0")
        return try VirtioTestDriver(device: disk)
    }

    @Test func identifiesAsAModernBlockDevice() throws {
        let driver = try driver()
        #expect(driver.read(0x000) == 0x7472_6976)
        #expect(driver.read(0x004) == 2)
        #expect(driver.read(0x008) == 2)
        #expect(driver.read(0x00c) == 0)
        let features = driver.offeredFeatures
        #expect(features & Virtio.Feature.version1 != 0)
        #expect(features & VirtioBlock.Feature.flush != 0)
        #expect(features & VirtioBlock.Feature.blockSize != 0)
        #expect(features & VirtioBlock.Feature.readOnly == 0)
        #expect(features & Virtio.Feature.indirectDescriptors != 0)
        #expect(features & Virtio.Feature.eventIndex == 0)
        #expect(try self.driver(readOnly: true).offeredFeatures & VirtioBlock.Feature.readOnly != 0)
        driver.write(0x30, 0)
        #expect(driver.read(0x034) == 256)
        driver.write(0x30, 1)
        #expect(driver.read(0x034) == 0)  // only one queue
    }

    @Test func configSpaceHoldsCapacityAndBlockSizeAtAnyAccessWidth() throws {
        let driver = try driver(sectors: 8)
        #expect(driver.read(0x100) == 8 && driver.read(0x104) == 0)
        #expect(driver.read(0x100 + 20) == 512)
        #expect(driver.read(0x100 + 12) == 254)  // seg_max
        var byte: UInt8 = 0xaa
        withUnsafeMutableBytes(of: &byte) { driver.transport.read(offset: 0x100, into: $0) }
        #expect(byte == 8)
        #expect(driver.read(0x100 + 0x200) == 0)
    }

    @Test func registersIgnoreWrongWidthsAndUnknownOffsetsReadZero() throws {
        let driver = try driver()
        var half: UInt16 = 0xffff
        withUnsafeMutableBytes(of: &half) { driver.transport.read(offset: 0, into: $0) }
        #expect(half == 0)
        withUnsafeBytes(of: UInt8(1)) { driver.transport.write(offset: 0x70, $0) }
        #expect(driver.status == 0)
        driver.write(0x72, 1)  // misaligned
        #expect(driver.status == 0)
        #expect(driver.read(0x0c8) == 0)
        #expect(driver.read(0x0fc) == 0)
        #expect(driver.read(0xffc) == 0)
    }

    @Test func refusesFeaturesWithoutVersion1OrNotOffered() throws {
        let driver = try driver()
        #expect(!driver.initialize(features: VirtioBlock.Feature.flush))
        #expect(driver.status & Virtio.Status.featuresOK == 0)
        #expect(!driver.initialize(features: Virtio.Feature.version1 | Virtio.Feature.eventIndex))
        #expect(driver.initialize(features: Virtio.Feature.version1))
    }

    @Test func writingZeroToStatusResetsTheDevice() throws {
        let driver = try driver()
        #expect(driver.initialize())
        #expect(try driver.blockRequest(type: VirtioTestDriver.typeFlush)?.status == VirtioTestDriver.statusOK)
        #expect(driver.read(0x60) == 1)
        driver.write(0x70, 0)
        #expect(driver.status == 0)
        #expect(driver.read(0x60) == 0)
        driver.write(0x30, 0)
        #expect(driver.read(0x44) == 0)
        // Notifying a reset device does nothing.
        try driver.publish(0)
        driver.notify()
        #expect(driver.usedIndex == 1)
    }

    @Test func driverOKWithoutFeaturesOKIsAnError() throws {
        let driver = try driver()
        driver.write(0x70, Virtio.Status.acknowledge | Virtio.Status.driver)
        driver.write(0x70, Virtio.Status.acknowledge | Virtio.Status.driver | Virtio.Status.driverOK)
        #expect(driver.needsReset)
        #expect(driver.read(0x60) & 0x2 != 0)
    }
}
