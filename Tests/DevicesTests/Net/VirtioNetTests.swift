#if canImport(Glibc)
import Glibc
#endif
import Devices
import GuestMemory
import HostOS
import Synchronization
import Testing

private let canMakeTaps =
    getuid() == 0 && access("/usr/sbin/ip", X_OK) == 0 && access("/dev/net/tun", R_OK | W_OK) == 0

/// A tap in a network namespace made for the test, and a packet socket on it: what the device
/// writes to the tap arrives on the socket, what the socket sends arrives on the tap. The real
/// kernel path the device has in a sandbox, without a guest.
final class TapFixture {
    let namespace: String
    let tap: TapDevice
    let socket: PacketSocket

    init(mtu: Int = 1500) throws {
        namespace = "rund-test-net-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        _ = try Subprocess.checked(["ip", "netns", "add", namespace])
        let path = "/run/netns/" + namespace
        // No IPv6 in the namespace: its router solicitations would be frames the tests did not send.
        tap = try NetworkNamespace.run(in: path) {
            _ = try Subprocess.checked(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
            return try TapDevice(name: "tap0")
        }
        socket = try NetworkNamespace.run(in: path) {
            _ = try Subprocess.checked(["ip", "link", "set", "tap0", "mtu", "\(mtu)", "up"])
            return try PacketSocket(interface: "tap0")
        }
    }

    deinit {
        tap.file.close()
        _ = try? Subprocess.run(["ip", "netns", "del", namespace])
    }

    /// Sends a frame out of tap0 (it arrives on the tap's descriptor).
    func send(_ frame: [UInt8]) throws { try socket.send(frame) }

    /// The next frame that came in on tap0 (written by the device), or nil after `milliseconds`.
    func receive(milliseconds: Int32 = 10_000) throws -> [UInt8]? { try socket.receive(milliseconds: milliseconds) }
}

/// An Ethernet frame from us to us with a recognisable payload (EtherType 0x88b5, local experimental).
func testFrame(payload: Int, seed: UInt8 = 1) -> [UInt8] {
    let mac: [UInt8] = [0x02, 0, 0, 0, 0, 0x42]
    return mac + mac + [0x88, 0xb5] + (0..<payload).map { UInt8(truncatingIfNeeded: Int($0) &+ Int(seed)) }
}

@Suite("virtio-net over a real tap", .serialized, .enabled(if: canMakeTaps, "needs root, iproute2 and /dev/net/tun"))
struct VirtioNetTests {
    static let mac: [UInt8] = [0x02, 0, 0, 0, 0, 0x42]
    static let header = [UInt8](repeating: 0, count: VirtioNet.headerLength)
    static let data: GuestAddress = 0x10000

    func makeDevice(_ fixture: TapFixture, offloads: Bool = false, mtu: Int = 1500) throws -> (VirtioNet, VirtioTestDriver) {
        let device = try VirtioNet(backend: fixture.tap, mac: Self.mac, mtu: mtu, offloads: offloads)
        return (device, try VirtioTestDriver(device: device))
    }

    /// Puts one frame on the transmit queue and notifies it.
    func transmit(_ driver: VirtioTestDriver, header: [UInt8] = header, frame: [UInt8], at address: GuestAddress = data) throws {
        try driver.memory.write(header + frame, at: address)
        let head = try driver.addChain([.init(address: address, length: UInt32(header.count + frame.count), writable: false)], queue: 1)
        try driver.publish(head, queue: 1)
        driver.notify(queue: 1)
    }

    /// Posts `count` receive buffers of `size` bytes each (at 0x40000 on).
    func postReceiveBuffers(_ driver: VirtioTestDriver, count: Int, size: UInt32, first: Int = 0) throws {
        for index in first..<(first + count) {
            let head = try driver.addChain([.init(address: 0x40000 + UInt64(index) * 0x10000, length: size, writable: true)], queue: 0)
            try driver.publish(head, queue: 0)
        }
    }

    @Test func configSpaceCarriesTheMACTheMTUAndLinkUp() throws {
        let fixture = try TapFixture()
        let (device, driver) = try makeDevice(fixture, mtu: 1400)
        #expect(device.offeredFeatures & VirtioNet.Feature.mergeableReceiveBuffers != 0)
        #expect(device.offeredFeatures & VirtioNet.Feature.hostTSO4 == 0)
        let config = (0..<12).map { driver.read(0x100 + UInt64($0)) & 0xff }.map(UInt8.init)
        #expect(Array(config[0..<6]) == Self.mac)
        #expect(config[6] == 1 && config[7] == 0)  // VIRTIO_NET_S_LINK_UP
        #expect(UInt16(config[10]) | UInt16(config[11]) << 8 == 1400)
    }

    @Test func aTransmittedFrameLeavesThroughTheTap() throws {
        let fixture = try TapFixture()
        let (device, driver) = try makeDevice(fixture)
        #expect(driver.initialize(queueSize: 16, queueCount: 2))
        let frame = testFrame(payload: 100)
        try transmit(driver, frame: frame)
        #expect(driver.usedIndex(queue: 1) == 1)
        #expect(try fixture.receive() == frame)
        #expect(device.counterValues.sentFrames == 1)
    }

    @Test func framesWithHeadersOrSizesNotAgreedAreDroppedAndTheQueueGoesOn() throws {
        let fixture = try TapFixture()
        let (device, driver) = try makeDevice(fixture)
        #expect(driver.initialize(queueSize: 16, queueCount: 2))
        var segmentation = Self.header
        segmentation[0] = 1  // NEEDS_CSUM, not negotiated
        segmentation[1] = 1  // TCPv4 segmentation, not negotiated
        try transmit(driver, header: segmentation, frame: testFrame(payload: 100))
        try transmit(driver, frame: testFrame(payload: 3000), at: 0x20000)  // Longer than the MTU allows.
        try transmit(driver, frame: [1, 2, 3], at: 0x30000)  // Shorter than an Ethernet header.
        #expect(driver.usedIndex(queue: 1) == 3)
        #expect(!driver.needsReset)
        #expect(device.counterValues.droppedSent == 3)
        #expect(try fixture.receive(milliseconds: 300) == nil)
        // The queue still works.
        let frame = testFrame(payload: 64, seed: 9)
        try transmit(driver, frame: frame, at: 0x38000)
        #expect(try fixture.receive() == frame)
    }

    @Test func aReceivedFrameFillsOneBufferWithItsHeader() throws {
        let fixture = try TapFixture()
        let (device, driver) = try makeDevice(fixture)
        #expect(driver.initialize(queueSize: 16, queueCount: 2))
        try postReceiveBuffers(driver, count: 2, size: 2048)
        let frame = testFrame(payload: 200)
        try fixture.send(frame)
        driver.notify(queue: 0)
        #expect(driver.usedIndex(queue: 0) == 1)
        let used = try driver.usedElement(0, queue: 0)
        #expect(used.length == UInt32(VirtioNet.headerLength + frame.count))
        let written = try driver.memory.readBytes(at: 0x40000, count: Int(used.length))
        #expect(written[10] == 1 && written[11] == 0)  // num_buffers
        #expect(Array(written[VirtioNet.headerLength...]) == frame)
        #expect(device.counterValues.receivedFrames == 1)
    }

    @Test func aLargeFrameSpansMergeableBuffersAndSaysHowMany() throws {
        let fixture = try TapFixture(mtu: 9000)
        let (_, driver) = try makeDevice(fixture, mtu: 9000)
        #expect(driver.initialize(queueSize: 16, queueCount: 2))
        try postReceiveBuffers(driver, count: 4, size: 1024)
        let frame = testFrame(payload: 2500)
        try fixture.send(frame)
        driver.notify(queue: 0)
        #expect(driver.usedIndex(queue: 0) == 3)
        var joined: [UInt8] = []
        for position in 0..<3 {
            let used = try driver.usedElement(UInt16(position), queue: 0)
            joined += try driver.memory.readBytes(at: 0x40000 + UInt64(used.id) * 0x10000, count: Int(used.length))
        }
        #expect(joined[10] == 3)
        #expect(Array(joined[VirtioNet.headerLength...]) == frame)
    }

    @Test func aGuestThatPostsNoBuffersOnlyStallsItsOwnReceivePath() throws {
        let fixture = try TapFixture()
        let (device, driver) = try makeDevice(fixture)
        #expect(driver.initialize(queueSize: 16, queueCount: 2))
        let frame = testFrame(payload: 80, seed: 3)
        try fixture.send(frame)
        driver.notify(queue: 0)
        #expect(driver.usedIndex(queue: 0) == 0)
        #expect(device.isWaitingForReceiveBuffers)
        // Transmit still works meanwhile.
        let out = testFrame(payload: 70, seed: 4)
        try transmit(driver, frame: out)
        #expect(try fixture.receive() == out)
        // Buffers come: the frame that waited arrives.
        try postReceiveBuffers(driver, count: 1, size: 2048)
        driver.notify(queue: 0)
        #expect(driver.usedIndex(queue: 0) == 1)
        #expect(!device.isWaitingForReceiveBuffers)
        #expect(Array(try driver.memory.readBytes(at: 0x40000 + UInt64(VirtioNet.headerLength), count: frame.count)) == frame)
    }

    @Test func withoutMergeableBuffersAFrameTooLargeForABufferIsDropped() throws {
        let fixture = try TapFixture()
        let (device, driver) = try makeDevice(fixture)
        let features = device.offeredFeatures & ~VirtioNet.Feature.mergeableReceiveBuffers
        #expect(driver.initialize(queueSize: 16, features: features | Virtio.Feature.version1, queueCount: 2))
        try postReceiveBuffers(driver, count: 1, size: 64)
        try fixture.send(testFrame(payload: 500))
        driver.notify(queue: 0)
        #expect(driver.usedIndex(queue: 0) == 0)
        #expect(device.counterValues.droppedReceived == 1)
        #expect(!driver.needsReset)
    }

    @Test func aReceiveBufferTooSmallForTheHeaderNeedsAReset() throws {
        let fixture = try TapFixture()
        let (_, driver) = try makeDevice(fixture)
        #expect(driver.initialize(queueSize: 16, queueCount: 2))
        try postReceiveBuffers(driver, count: 1, size: 4)
        try fixture.send(testFrame(payload: 60))
        driver.notify(queue: 0)
        #expect(driver.needsReset)
    }
}
