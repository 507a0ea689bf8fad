import AgentProtocol
import HostOS
import TTRPC

/// A CreateContainer request's `GuestNetwork`, every field checked (protos/agent.proto is the
/// contract), in the types the interface calls take. Nothing is applied while it is built, so a
/// refused request changes nothing.
struct GuestNetworkPlan: Equatable, Sendable {
    struct Prefix: Equatable, Sendable, CustomStringConvertible {
        var address: IPv4Address
        var length: Int
        var description: String { "\(address)/\(length)" }
    }

    struct Route: Equatable, Sendable {
        var destination: Prefix
        /// Nil: a directly attached network.
        var gateway: IPv4Address?
    }

    struct HostEntry: Equatable, Sendable {
        var address: IPv4Address
        var names: [String]
    }

    var mac: [UInt8]
    var mtu: Int
    var addresses: [Prefix]
    var routes: [Route]
    var nameservers: [IPv4Address]
    var searchDomains: [String]
    var hosts: [HostEntry]

    static let mtuRange = 68...65535
    /// One address: the interface is set up with SIOCSIFADDR, which holds a single one.
    static let maxAddresses = 1
    /// glibc's resolver reads no more than three (MAXNS) and six search domains.
    static let maxNameservers = 3
    static let maxSearchDomains = 6
    static let maxHostEntries = 64
    static let maxNamesPerHostEntry = 32
    static let nameLengths = 1...253

    init(_ network: AgentGuestNetwork) throws(TTRPCStatus) {
        let mac = Array(network.mac)
        guard mac.count == 6 else { throw Self.invalid("network.mac must be 6 bytes, not \(mac.count)") }
        guard mac[0] & 1 == 0, mac != [0, 0, 0, 0, 0, 0] else {
            throw Self.invalid("network.mac \(Self.macText(mac)) must be a unicast address")
        }
        self.mac = mac
        guard Self.mtuRange.contains(Int(network.mtu)) else {
            throw Self.invalid("network.mtu \(network.mtu) must be \(Self.mtuRange.lowerBound) to \(Self.mtuRange.upperBound)")
        }
        mtu = Int(network.mtu)
        guard network.addresses.count <= Self.maxAddresses else {
            throw Self.invalid(
                "network.addresses has \(network.addresses.count) entries: the agent sets one address per interface (no aliases)")
        }
        addresses = try network.addresses.enumerated().map { index, prefix throws(TTRPCStatus) in
            try Self.prefix(prefix, field: "network.addresses[\(index)]")
        }
        routes = try network.routes.enumerated().map { index, route throws(TTRPCStatus) in
            let field = "network.routes[\(index)]"
            let destination = try Self.prefix(route.destination, field: field + ".destination")
            guard destination.address.value & ~IPv4Address(netmaskOfLength: destination.length).value == 0 else {
                throw Self.invalid("\(field).destination \(destination) has bits set beyond its prefix length")
            }
            let gateway = route.gateway.isEmpty ? nil : try Self.address(Array(route.gateway), field: field + ".gateway")
            return Route(destination: destination, gateway: gateway)
        }
        guard network.nameservers.count <= Self.maxNameservers else {
            throw Self.invalid("network.nameservers has \(network.nameservers.count) entries, at most \(Self.maxNameservers)")
        }
        nameservers = try network.nameservers.enumerated().map { index, bytes throws(TTRPCStatus) in
            try Self.address(Array(bytes), field: "network.nameservers[\(index)]")
        }
        guard network.searchDomains.count <= Self.maxSearchDomains else {
            throw Self.invalid("network.search_domains has \(network.searchDomains.count) entries, at most \(Self.maxSearchDomains)")
        }
        for (index, domain) in network.searchDomains.enumerated() {
            try Self.checkName(domain, field: "network.search_domains[\(index)]")
        }
        searchDomains = network.searchDomains
        guard network.hosts.count <= Self.maxHostEntries else {
            throw Self.invalid("network.hosts has \(network.hosts.count) entries, at most \(Self.maxHostEntries)")
        }
        hosts = try network.hosts.enumerated().map { index, entry throws(TTRPCStatus) in
            let field = "network.hosts[\(index)]"
            let address = try Self.address(Array(entry.address), field: field + ".address")
            guard (1...Self.maxNamesPerHostEntry).contains(entry.names.count) else {
                throw Self.invalid("\(field).names has \(entry.names.count) entries, 1 to \(Self.maxNamesPerHostEntry)")
            }
            for (nameIndex, name) in entry.names.enumerated() {
                try Self.checkName(name, field: "\(field).names[\(nameIndex)]")
            }
            return HostEntry(address: address, names: entry.names)
        }
    }

    /// Routes in the order they can be added: a gateway must already be reachable through a
    /// directly attached network. The route to an address's own network is left out: the
    /// kernel made it with the address (with that address as its source).
    var routesToAdd: [Route] {
        let ownNetworks = addresses.map { prefix in
            Prefix(address: IPv4Address(prefix.address.value & IPv4Address(netmaskOfLength: prefix.length).value), length: prefix.length)
        }
        let attached = routes.filter { $0.gateway == nil && !ownNetworks.contains($0.destination) }
        return attached + routes.filter { $0.gateway != nil }
    }

    /// Host names and search domains: [A-Za-z0-9.-], 1 to 253 characters. Also what keeps a
    /// name from adding a line or a field to /etc/hosts or /etc/resolv.conf.
    static func isValidName(_ name: String) -> Bool {
        nameLengths.contains(name.utf8.count) && name.utf8.allSatisfy(isNameByte)
    }

    static func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || byte == 0x2e
            || byte == 0x2d
    }

    static func macText(_ mac: [UInt8]) -> String {
        mac.map { byte in
            let digits = Array("0123456789abcdef")
            return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
        }.joined(separator: ":")
    }

    private static func checkName(_ name: String, field: String) throws(TTRPCStatus) {
        guard isValidName(name) else {
            throw invalid("\(field) \"\(RawName.printable(name.utf8))\" must be 1 to 253 characters of [A-Za-z0-9.-]")
        }
    }

    private static func prefix(_ prefix: AgentIPv4Prefix, field: String) throws(TTRPCStatus) -> Prefix {
        let address = try address(Array(prefix.address), field: field + ".address")
        guard prefix.prefixLength <= 32 else {
            throw invalid("\(field).prefix_length \(prefix.prefixLength) must be 0 to 32")
        }
        return Prefix(address: address, length: Int(prefix.prefixLength))
    }

    private static func address(_ bytes: [UInt8], field: String) throws(TTRPCStatus) -> IPv4Address {
        guard let address = IPv4Address(bytes: bytes) else {
            throw invalid("\(field) must be an IPv4 address of 4 bytes, not \(bytes.count)")
        }
        return address
    }

    private static func invalid(_ message: String) -> TTRPCStatus {
        TTRPCStatus(.invalidArgument, message)
    }
}
