/// Constants from the virtio 1.1+ specification shared by the transport, queues and devices.
public enum Virtio {
    /// Device status bits (spec 2.1).
    public enum Status {
        public static let acknowledge: UInt32 = 0x01
        public static let driver: UInt32 = 0x02
        public static let driverOK: UInt32 = 0x04
        public static let featuresOK: UInt32 = 0x08
        public static let needsReset: UInt32 = 0x40
        public static let failed: UInt32 = 0x80
    }

    /// Device-independent feature bits (spec 6).
    public enum Feature {
        public static let indirectDescriptors: UInt64 = 1 << 28
        public static let eventIndex: UInt64 = 1 << 29
        public static let version1: UInt64 = 1 << 32
    }

    /// Device type numbers (spec 5).
    public enum DeviceType {
        public static let network: UInt32 = 1
        public static let block: UInt32 = 2
        public static let balloon: UInt32 = 5
        public static let socket: UInt32 = 19
        public static let pmem: UInt32 = 27
    }

    /// InterruptStatus bits of virtio-mmio.
    public enum Interrupt {
        public static let usedBuffer: UInt32 = 0x1
        public static let configChange: UInt32 = 0x2
    }
}
