/// An IPv4 address (host order inside, network order on the wire) and a prefix of one.
public struct IPv4: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let value: UInt32

    public init(_ value: UInt32) {
        self.value = value
    }

    /// Dotted quad ("10.213.0.2"); nil for anything else.
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

    /// The four bytes in network order.
    public var bytes: [UInt8] { [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)] }

    public var isLoopback: Bool { value >> 24 == 127 }

    public var description: String { bytes.map(String.init).joined(separator: ".") }

    public static func < (lhs: IPv4, rhs: IPv4) -> Bool { lhs.value < rhs.value }
}

/// An address with its prefix length ("10.213.0.2/30").
public struct IPv4Prefix: Sendable, Hashable, CustomStringConvertible {
    public let address: IPv4
    public let length: Int

    public init?(address: IPv4, length: Int) {
        guard (0...32).contains(length) else { return nil }
        self.address = address
        self.length = length
    }

    /// "A.B.C.D/N", or "default" for 0.0.0.0/0 as `ip route` prints it.
    public init?(_ text: some StringProtocol) {
        if text == "default" {
            self.init(address: IPv4(0), length: 0)
            return
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPv4(parts[0]) else { return nil }
        guard parts.count == 2 else {
            self.init(address: address, length: 32)
            return
        }
        guard parts[1].allSatisfy(\.isASCII), let length = Int(parts[1]) else { return nil }
        self.init(address: address, length: length)
    }

    public var description: String { "\(address)/\(length)" }
}

/// A route: where to (a prefix) and through which router (nil: directly attached).
public struct IPv4Route: Sendable, Hashable, CustomStringConvertible {
    public let destination: IPv4Prefix
    public let gateway: IPv4?

    public init(destination: IPv4Prefix, gateway: IPv4?) {
        self.destination = destination
        self.gateway = gateway
    }

    public var description: String { "\(destination)" + (gateway.map { " via \($0)" } ?? "") }
}

/// A MAC address as "aa:bb:cc:dd:ee:ff".
public enum MACAddress {
    public static func parse(_ text: some StringProtocol) -> [UInt8]? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        let bytes = parts.compactMap { $0.count == 2 && $0.allSatisfy(\.isHexDigit) ? UInt8($0, radix: 16) : nil }
        return bytes.count == 6 ? bytes : nil
    }

    public static func text(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: ":")
    }
}
