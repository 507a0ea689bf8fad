import HostOS

/// An address with its prefix length ("10.213.0.2/30").
public struct IPv4Prefix: Sendable, Hashable, CustomStringConvertible {
    public let address: IPv4Address
    public let length: Int

    public init?(address: IPv4Address, length: Int) {
        guard (0...32).contains(length) else { return nil }
        self.address = address
        self.length = length
    }

    /// "A.B.C.D/N", or "default" for 0.0.0.0/0 as `ip route` prints it.
    public init?(_ text: some StringProtocol) {
        if text == "default" {
            self.init(address: IPv4Address(0), length: 0)
            return
        }
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPv4Address(parts[0]) else { return nil }
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
    public let gateway: IPv4Address?

    public init(destination: IPv4Prefix, gateway: IPv4Address?) {
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
