import HostOS

/// What a guest needs to know to take over an interface of a network namespace (the veth CNI
/// or rund made there): its MAC, MTU, IPv4Address addresses and the routes through it.
public struct InterfaceConfiguration: Sendable, Equatable {
    public var name: String
    public var mac: [UInt8]
    public var mtu: Int
    public var addresses: [IPv4Prefix]
    /// Routes through the interface that the kernel did not make for an address.
    public var routes: [IPv4Route]
}

extension InterfaceConfiguration {
    /// Reads the interface of namespace `namespace` that carries the traffic: the one named
    /// `name`, else the first with an IPv4Address address that is not loopback and not `skipping`.
    static func read(in namespace: String, name: String? = nil, skipping: Set<String> = []) throws -> InterfaceConfiguration {
        let links = try NetworkTools.run(["ip", "-o", "link", "show"], in: namespace)
        let addresses = try NetworkTools.run(["ip", "-o", "-4", "addr", "show"], in: namespace)
        let routes = try NetworkTools.run(["ip", "-4", "route", "show", "table", "main"], in: namespace)
        return try parse(links: links, addresses: addresses, routes: routes, name: name, skipping: skipping)
    }

    /// Parses `ip -o link show`, `ip -o -4 addr show` and `ip -4 route show` output.
    static func parse(
        links: String, addresses: String, routes: String, name: String?, skipping: Set<String>
    ) throws -> InterfaceConfiguration {
        var prefixes: [(interface: String, prefix: IPv4Prefix)] = []
        for line in addresses.split(separator: "\n") {
            // "2: eth0    inet 10.213.0.2/30 brd 10.213.0.3 scope global eth0\       valid_lft ..."
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count >= 4, let inet = words.firstIndex(of: "inet"), inet + 1 < words.count,
                let prefix = IPv4Prefix(words[inet + 1])
            else { continue }
            prefixes.append((String(words[1]), prefix))
        }
        let chosen: String
        if let name {
            chosen = name
        } else {
            guard let found = prefixes.first(where: { !$0.prefix.address.isLoopback && !skipping.contains($0.interface) }) else {
                throw NetworkError("the network namespace has no interface with an IPv4Address address")
            }
            chosen = found.interface
        }
        var mac: [UInt8]? = nil
        var mtu: Int? = nil
        for line in links.split(separator: "\n") {
            // "2: eth0@if5: <BROADCAST,...> mtu 1500 qdisc noqueue state UP ... link/ether 02:..:.. brd ff:..."
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\\" })
            guard words.count > 2 else { continue }
            let linkName = words[1].split(separator: "@").first.map(String.init) ?? ""
            guard linkName == chosen || linkName == chosen + ":" else { continue }
            if let value = word(after: "mtu", in: words) { mtu = Int(value) }
            if let value = word(after: "link/ether", in: words) { mac = MACAddress.parse(value) }
        }
        guard let mac, let mtu else { throw NetworkError("interface \(chosen) of the network namespace is not an Ethernet link") }
        var found: [IPv4Route] = []
        for line in routes.split(separator: "\n") {
            // "default via 10.213.0.1 dev eth0", "10.213.0.0/30 dev eth0 proto kernel scope link src 10.213.0.2"
            let words = line.split(separator: " ")
            guard let first = words.first, let destination = IPv4Prefix(first), word(after: "dev", in: words).map(String.init) == chosen,
                word(after: "proto", in: words) != "kernel"
            else { continue }
            let gateway = word(after: "via", in: words).flatMap { IPv4Address($0) }
            found.append(IPv4Route(destination: destination, gateway: gateway))
        }
        return InterfaceConfiguration(
            name: chosen, mac: mac, mtu: mtu, addresses: prefixes.filter { $0.interface == chosen }.map(\.prefix),
            routes: found.sorted { ($0.gateway == nil ? 0 : 1) < ($1.gateway == nil ? 0 : 1) })
    }

    /// The word after `key` ("mtu 1500" → "1500"), if any.
    private static func word(after key: String, in words: [Substring]) -> Substring? {
        guard let at = words.firstIndex(where: { $0 == key }), at + 1 < words.count else { return nil }
        return words[at + 1]
    }
}
