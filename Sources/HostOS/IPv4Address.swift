/// An IPv4 address: four bytes, most significant first (as written, and as on the wire).
public struct IPv4Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The address as a number: 10.0.0.1 is 0x0A00_0001.
    public let value: UInt32

    public init(_ value: UInt32) {
        self.value = value
    }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Nil unless exactly four bytes.
    public init?<Bytes: Collection<UInt8>>(bytes: Bytes) {
        guard bytes.count == 4 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// The netmask of a prefix length (0...32): 24 gives 255.255.255.0.
    public init(netmaskOfLength length: Int) {
        precondition((0...32).contains(length), "an IPv4 prefix length is 0 to 32")
        value = length == 0 ? 0 : UInt32.max << (32 - length)
    }

    public var bytes: [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }

    /// As the kernel's structures hold it (`in_addr.s_addr`).
    public var networkOrder: UInt32 { value.bigEndian }

    public var description: String { bytes.map(String.init).joined(separator: ".") }

    /// A dotted quad ("10.213.0.2"); nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy(\.isASCII), let octet = UInt8(part) else { return nil }
            value = value << 8 | UInt32(octet)
        }
        self.value = value
    }

    /// 127.0.0.0/8.
    public var isLoopback: Bool { value >> 24 == 127 }

    public static func < (lhs: IPv4Address, rhs: IPv4Address) -> Bool { lhs.value < rhs.value }
}
