#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Testing

@testable import Network

private let canMakeNetworks =
    getuid() == 0 && access("/usr/sbin/ip", X_OK) == 0 && access("/usr/sbin/tc", X_OK) == 0
    && access("/usr/sbin/iptables", X_OK) == 0 && access("/dev/net/tun", R_OK | W_OK) == 0

/// What `ip`/`iptables` say exists now, for checking that a network came and went.
private enum HostNetworkState {
    static func namespaces() throws -> String { try NetworkTools.run(["ip", "netns", "list"]) }
    static func links() throws -> String { try NetworkTools.run(["ip", "-o", "link", "show"]) }
    static func natRules() throws -> String { try NetworkTools.run(["iptables", "-w", "-t", "nat", "-S", "POSTROUTING"]) }
}

@Suite("sandbox networks on the real host", .serialized, .enabled(if: canMakeNetworks, "needs root, iproute2, iptables and /dev/net/tun"))
struct SandboxNetworkTests {
    @Test func defaultNetworkIsMadeWiredAndRemovedCompletely() throws {
        let root = try TemporaryStateRoot()
        let network = try #require(try SandboxNetwork.prepare(.default, sandboxID: "net-test-1", stateRoot: root.path))
        let lease = try #require(network.lease)
        // The namespace, the veth's host end with the .1 address, the NAT rule, the tap and both redirects.
        #expect(try HostNetworkState.namespaces().contains(lease.namespaceName))
        let hostAddresses = try NetworkTools.run(["ip", "-o", "-4", "addr", "show", "dev", lease.hostLink])
        #expect(hostAddresses.contains("\(lease.hostAddress)/30"))
        #expect(try HostNetworkState.natRules().contains(lease.ruleComment))
        #expect(network.interface.name == "eth0")
        #expect(network.interface.addresses.map(\.description) == ["\(lease.guestAddress)/30"])
        #expect(network.interface.routes == [IPv4Route(destination: IPv4Prefix("0.0.0.0/0")!, gateway: lease.hostAddress)])
        #expect(network.interface.mac.count == 6 && network.interface.mac[0] == 0x02)
        let inside = try NetworkTools.run(["ip", "-o", "link", "show"], in: lease.namespacePath)
        #expect(inside.contains(" tap0: "))
        for device in ["eth0", "tap0"] {
            let filters = try NetworkTools.run(["tc", "filter", "show", "dev", device, "ingress"], in: lease.namespacePath)
            #expect(filters.contains("mirred (Egress Redirect to device \(device == "eth0" ? "tap0" : "eth0"))"))
        }

        #expect(network.release() == [])
        #expect(try !HostNetworkState.namespaces().contains(lease.namespaceName))
        #expect(try !HostNetworkState.natRules().contains(lease.ruleComment))
        #expect(try !HostNetworkState.links().contains(lease.hostLink + "@"))
        #expect(AddressLease.all(stateRoot: root.path).isEmpty)
        #expect(network.release() == [])
    }

    @Test func concurrentSandboxesGetDifferentAddresses() throws {
        let root = try TemporaryStateRoot()
        let first = try #require(try SandboxNetwork.prepare(.default, sandboxID: "net-a", stateRoot: root.path))
        defer { first.release() }
        let second = try #require(try SandboxNetwork.prepare(.default, sandboxID: "net-b", stateRoot: root.path))
        defer { second.release() }
        #expect(first.interface.addresses != second.interface.addresses)
        #expect(first.interface.mac != second.interface.mac)
        #expect(first.lease?.index != second.lease?.index)
    }

    @Test func gcRemovesTheNetworkOfADeadOwnerAndKeepsALiveOnesNetwork() throws {
        let root = try TemporaryStateRoot()
        let live = try #require(try SandboxNetwork.prepare(.default, sandboxID: "net-live", stateRoot: root.path))
        defer { live.release() }
        // A crashed rund: its namespace, veth and rule exist, its lease names a process that is gone.
        let dead = try AddressLease.take(stateRoot: root.path, sandboxID: "net-dead")
        try SandboxNetwork.makeNamespace(for: dead)
        let file = try FileDescriptor.open(AddressLease.directory(root.path) + "/\(dead.index)", O_WRONLY | O_TRUNC)
        try file.writeAll("999999 1 net-dead\n")
        file.close()

        let listed = SandboxNetwork.collectGarbage(stateRoot: root.path, dryRun: true)
        #expect(listed.abandoned.map(\.sandboxID) == ["net-dead"])
        #expect(try HostNetworkState.namespaces().contains(dead.namespaceName))

        let collected = SandboxNetwork.collectGarbage(stateRoot: root.path, dryRun: false)
        #expect(collected.abandoned.map(\.sandboxID) == ["net-dead"])
        #expect(collected.problems == [])
        #expect(try !HostNetworkState.namespaces().contains(dead.namespaceName))
        #expect(try !HostNetworkState.natRules().contains(dead.ruleComment))
        #expect(try HostNetworkState.namespaces().contains(try #require(live.lease).namespaceName))
        #expect(AddressLease.all(stateRoot: root.path).map(\.sandboxID) == ["net-live"])
    }

    @Test func aNamespaceSomeoneElseMadeKeepsItsInterfaceAndLosesOnlyOurs() throws {
        let name = "rund-test-cni-\(getpid())"
        try NetworkTools.run(["ip", "netns", "add", name])
        defer { _ = NetworkTools.attempt(["ip", "netns", "del", name]) }
        let path = "/run/netns/" + name
        try NetworkTools.run(["ip", "link", "add", "rtc\(getpid() % 100_000)", "type", "veth", "peer", "name", "eth0", "netns", name])
        try NetworkTools.run(["ip", "-n", name, "addr", "add", "192.168.77.5/24", "dev", "eth0"])
        try NetworkTools.run(["ip", "-n", name, "link", "set", "eth0", "mtu", "1400", "up"])
        try NetworkTools.run(["ip", "-n", name, "route", "add", "default", "via", "192.168.77.1"])
        let root = try TemporaryStateRoot()

        let network = try #require(try SandboxNetwork.prepare(.namespace(path), sandboxID: "net-cni", stateRoot: root.path))
        #expect(network.interface.name == "eth0")
        #expect(network.interface.mtu == 1400)
        #expect(network.interface.addresses.map(\.description) == ["192.168.77.5/24"])
        #expect(network.interface.routes.map(\.description) == ["0.0.0.0/0 via 192.168.77.1"])
        #expect(try NetworkTools.run(["ip", "-o", "link", "show", "tap0"], in: path).contains("mtu 1400"))
        #expect(network.release() == [])
        let after = try NetworkTools.run(["ip", "-o", "link", "show"], in: path)
        #expect(after.contains(" eth0@"))
        #expect(!after.contains("tap0"))
        #expect(try NetworkTools.run(["tc", "qdisc", "show", "dev", "eth0"], in: path).contains("ingress") == false)
    }
}

@Suite("network text the tools print")
struct NetworkParsingTests {
    @Test func interfaceConfigurationIsReadFromIPOutput() throws {
        let links = """
            1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
            2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 0a:58:0a:58:00:05 brd ff:ff:ff:ff:ff:ff link-netnsid 0
            """
        let addresses = """
            1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
            2: eth0    inet 10.88.0.5/16 brd 10.88.255.255 scope global eth0\\       valid_lft forever preferred_lft forever
            """
        let routes = """
            default via 10.88.0.1 dev eth0
            10.88.0.0/16 dev eth0 proto kernel scope link src 10.88.0.5
            10.96.0.0/12 via 10.88.0.1 dev eth0
            """
        let interface = try InterfaceConfiguration.parse(links: links, addresses: addresses, routes: routes, name: nil, skipping: [])
        #expect(interface.name == "eth0")
        #expect(interface.mtu == 1450)
        #expect(interface.mac == [0x0a, 0x58, 0x0a, 0x58, 0x00, 0x05])
        #expect(interface.addresses.map(\.description) == ["10.88.0.5/16"])
        #expect(interface.routes.map(\.description) == ["0.0.0.0/0 via 10.88.0.1", "10.96.0.0/12 via 10.88.0.1"])
    }

    @Test func aNamespaceWithoutAnAddressIsRefused() {
        #expect(throws: NetworkError.self) {
            try InterfaceConfiguration.parse(
                links: "", addresses: "1: lo    inet 127.0.0.1/8 scope host lo", routes: "", name: nil, skipping: [])
        }
    }

    @Test func addressesAndModesParseStrictly() {
        #expect(IPv4Address("10.213.0.2")?.value == 0x0AD5_0002)
        for bad in ["10.213.0", "10.213.0.256", "1.2.3.4.5", "a.b.c.d", "", "1..2.3", "01234.1.1.1"] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
        #expect(IPv4Prefix("10.0.0.0/33") == nil)
        #expect(NetworkMode("netns:/run/netns/x") == .namespace("/run/netns/x"))
        #expect(NetworkMode("netns:relative") == nil)
        #expect(NetworkMode("bridge") == nil)
        #expect(MACAddress.parse("02:00:0a:d5:00:02") == [2, 0, 10, 0xd5, 0, 2])
        #expect(MACAddress.text([2, 0, 10, 0xd5, 0, 2]) == "02:00:0a:d5:00:02")
    }
}

/// A state root of its own under /tmp, removed afterwards.
final class TemporaryStateRoot {
    let path: String

    init() throws {
        var template = Array("/tmp/rund-network-test-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp", errno: errno) }
        path = String(
            decoding: Array(UnsafeBufferPointer(start: UnsafeRawPointer(made).assumingMemoryBound(to: UInt8.self), count: strlen(made))),
            as: UTF8.self)
    }

    deinit {
        try? FileSystem.removeTree(path)
    }
}
