import GuestMemory

extension VirtioMMIOTransport {
    /// Register offsets of virtio-mmio version 2 (spec 4.2.2). All are 32 bits wide.
    enum Register {
        static let magicValue: UInt64 = 0x000
        static let version: UInt64 = 0x004
        static let deviceID: UInt64 = 0x008
        static let vendorID: UInt64 = 0x00c
        static let deviceFeatures: UInt64 = 0x010
        static let deviceFeaturesSelect: UInt64 = 0x014
        static let driverFeatures: UInt64 = 0x020
        static let driverFeaturesSelect: UInt64 = 0x024
        static let queueSelect: UInt64 = 0x030
        static let queueSizeMax: UInt64 = 0x034
        static let queueSize: UInt64 = 0x038
        static let queueReady: UInt64 = 0x044
        static let queueNotify: UInt64 = 0x050
        static let interruptStatus: UInt64 = 0x060
        static let interruptAcknowledge: UInt64 = 0x064
        static let status: UInt64 = 0x070
        static let queueDescriptorLow: UInt64 = 0x080
        static let queueDescriptorHigh: UInt64 = 0x084
        static let queueDriverLow: UInt64 = 0x090
        static let queueDriverHigh: UInt64 = 0x094
        static let queueDeviceLow: UInt64 = 0x0a0
        static let queueDeviceHigh: UInt64 = 0x0a4
        static let configGeneration: UInt64 = 0x0fc
        static let config: UInt64 = 0x100
    }

    /// "virt" in little-endian.
    public static let magic: UInt32 = 0x7472_6976
    public static let version: UInt32 = 2
    /// Size of the MMIO window the VMM maps (and declares in ACPI) for each device.
    public static let windowSize: UInt64 = 0x1000
}

/// What the driver configured for one queue; becomes a `Virtqueue` when it sets QueueReady.
struct QueueRegisters {
    let maxSize: UInt16
    var size: UInt32
    var descriptorTable: UInt64 = 0
    var driverArea: UInt64 = 0
    var deviceArea: UInt64 = 0
    var queue: Virtqueue?

    init(maxSize: UInt16) {
        self.maxSize = maxSize
        self.size = UInt32(maxSize)
    }

    var isReady: Bool { queue != nil }

    /// The virtqueue these registers describe, its rings checked against guest memory: what
    /// the driver's QueueReady makes, and what a restore makes again.
    func makeQueue(index: Int, memory: GuestMemory, indirectDescriptors: Bool) throws(VirtqueueError) -> Virtqueue {
        guard let size = UInt16(exactly: self.size) else { throw VirtqueueError.badSize(UInt16.max, max: maxSize) }
        return try Virtqueue(
            index: index, size: size, maxSize: maxSize, descriptorTable: GuestAddress(descriptorTable),
            driverArea: GuestAddress(driverArea), deviceArea: GuestAddress(deviceArea), memory: memory,
            indirectDescriptors: indirectDescriptors)
    }
}

extension UInt64 {
    /// Replaces the low or high 32 bits, as the paired Low/High registers do.
    func replacingHalf(high: Bool, with value: UInt32) -> UInt64 {
        high ? (self & 0xffff_ffff) | (UInt64(value) << 32) : (self & ~0xffff_ffff) | UInt64(value)
    }
}
