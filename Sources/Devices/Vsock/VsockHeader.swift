/// The 44-byte little-endian header of every virtio-vsock packet (spec 5.10.6,
/// `struct virtio_vsock_hdr`).
struct VsockHeader: Equatable, Sendable {
    static let length = 44

    enum PacketType {
        static let stream: UInt16 = 1
    }

    enum Operation {
        static let request: UInt16 = 1
        static let response: UInt16 = 2
        static let reset: UInt16 = 3
        static let shutdown: UInt16 = 4
        static let readWrite: UInt16 = 5
        static let creditUpdate: UInt16 = 6
        static let creditRequest: UInt16 = 7
        static let known = request...creditRequest
    }

    /// SHUTDOWN flags: the sender will receive (`receive`) or send (`send`) no more.
    enum ShutdownFlag {
        static let receive: UInt32 = 1
        static let send: UInt32 = 2
        static let both: UInt32 = 3
    }

    var sourceCID: UInt64
    var destinationCID: UInt64
    var sourcePort: UInt32
    var destinationPort: UInt32
    var length: UInt32
    var type: UInt16
    var operation: UInt16
    var flags: UInt32
    var bufferAllocation: UInt32
    var forwardCount: UInt32

    init(
        sourceCID: UInt64, destinationCID: UInt64, sourcePort: UInt32, destinationPort: UInt32,
        length: UInt32 = 0, type: UInt16 = PacketType.stream, operation: UInt16, flags: UInt32 = 0,
        bufferAllocation: UInt32 = 0, forwardCount: UInt32 = 0
    ) {
        self.sourceCID = sourceCID
        self.destinationCID = destinationCID
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.length = length
        self.type = type
        self.operation = operation
        self.flags = flags
        self.bufferAllocation = bufferAllocation
        self.forwardCount = forwardCount
    }

    /// Decodes the first 44 bytes of `bytes` (the caller checked there are that many).
    init(decoding bytes: [UInt8]) {
        func field<T: FixedWidthInteger>(_: T.Type, _ offset: Int) -> T {
            bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        self.init(
            sourceCID: field(UInt64.self, 0), destinationCID: field(UInt64.self, 8),
            sourcePort: field(UInt32.self, 16), destinationPort: field(UInt32.self, 20),
            length: field(UInt32.self, 24), type: field(UInt16.self, 28), operation: field(UInt16.self, 30),
            flags: field(UInt32.self, 32), bufferAllocation: field(UInt32.self, 36), forwardCount: field(UInt32.self, 40))
    }

    var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.length)
        func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(offset..<(offset + $0.count), with: $0) }
        }
        put(sourceCID, 0)
        put(destinationCID, 8)
        put(sourcePort, 16)
        put(destinationPort, 20)
        put(length, 24)
        put(type, 28)
        put(operation, 30)
        put(flags, 32)
        put(bufferAllocation, 36)
        put(forwardCount, 40)
        return bytes
    }

    /// The header that answers this one, addressed back to its sender.
    func reply(operation: UInt16, flags: UInt32 = 0) -> VsockHeader {
        VsockHeader(
            sourceCID: destinationCID, destinationCID: sourceCID, sourcePort: destinationPort,
            destinationPort: sourcePort, operation: operation, flags: flags)
    }
}
