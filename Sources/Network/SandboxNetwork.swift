#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Logging
import Synchronization

/// How a sandbox reaches the network (`rund run --network`).
public enum NetworkMode: Sendable, Equatable, CustomStringConvertible {
    /// Loopback only: the VM gets no network device.
    case none
    /// A network namespace of its own with a veth pair to the host, an address from
    /// `AddressLease.range`, and NAT to the outside.
    case `default`
    /// A network namespace someone else made (CNI, a test), given by its path: its interface
    /// (the one with an IPv4Address address) is the one the guest takes over.
    case namespace(String)

    /// "none", "default" or "netns:PATH"; nil for anything else.
    public init?(_ text: String) {
        switch text {
        case "none": self = .none
        case "default": self = .default
        default:
            guard text.hasPrefix("netns:"), text.count > 6, text.dropFirst(6).hasPrefix("/") else { return nil }
            self = .namespace(String(text.dropFirst(6)))
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .default: return "default"
        case .namespace(let path): return "netns:" + path
        }
    }
}

/// One sandbox's network, the way Kata and firecracker-containerd give a VM the network of a
/// namespace: a tap made in the namespace, and tc filters that redirect every frame arriving
/// on the namespace's interface (a veth) to the tap and back. The guest takes over the veth's
/// MAC, addresses, routes and MTU, so nothing outside the namespace can tell the difference.
/// `release()` removes everything made for it; after a crash `collectGarbage` does.
public final class SandboxNetwork: Sendable {
    /// The tap the VM's virtio-net device reads and writes.
    public let tap: TapDevice
    /// What the guest configures on its interface.
    public let interface: InterfaceConfiguration
    /// For the guest's /etc/resolv.conf.
    public let nameservers: [IPv4Address]
    public let mode: NetworkMode
    let lease: AddressLease?
    let namespacePath: String
    let stateRoot: String
    let logger: Logger
    private let released = Atomic<Bool>(false)

    /// The tap's name inside the namespace.
    static let tapName = "tap0"
    /// The veth end rund puts in a sandbox's own namespace (`default`).
    static let guestLinkName = "eth0"

    private init(
        tap: TapDevice, interface: InterfaceConfiguration, nameservers: [IPv4Address], mode: NetworkMode, lease: AddressLease?,
        namespacePath: String, stateRoot: String, logger: Logger
    ) {
        self.tap = tap
        self.interface = interface
        self.nameservers = nameservers
        self.mode = mode
        self.lease = lease
        self.namespacePath = namespacePath
        self.stateRoot = stateRoot
        self.logger = logger
    }

    /// Sets up `mode` for the sandbox (nil for `.none`: nothing to set up). On failure nothing
    /// made is left behind.
    public static func prepare(
        _ mode: NetworkMode, sandboxID: String, stateRoot: String, logger: Logger = Logger(label: "rund.network")
    ) throws -> SandboxNetwork? {
        switch mode {
        case .none:
            return nil
        case .default:
            let lease = try AddressLease.take(stateRoot: stateRoot, sandboxID: sandboxID)
            do {
                try makeNamespace(for: lease)
                let (tap, interface) = try attachTap(in: lease.namespacePath, interfaceName: guestLinkName)
                return SandboxNetwork(
                    tap: tap, interface: interface, nameservers: hostNameservers(), mode: mode, lease: lease,
                    namespacePath: lease.namespacePath, stateRoot: stateRoot, logger: logger)
            } catch {
                for problem in removeNamespace(of: lease) { logger.warning("network clean-up: \(problem)") }
                lease.release(stateRoot: stateRoot)
                throw error
            }
        case .namespace(let path):
            let (tap, interface) = try attachTap(in: path, interfaceName: nil)
            return SandboxNetwork(
                tap: tap, interface: interface, nameservers: hostNameservers(), mode: mode, lease: nil, namespacePath: path,
                stateRoot: stateRoot, logger: logger)
        }
    }

    /// Removes what `prepare` made, once the VM is gone (it closes the tap). Idempotent;
    /// returns what could not be removed (for the log: `rund gc` retries a `default` one).
    @discardableResult
    public func release() -> [String] {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return [] }
        tap.file.close()
        var problems: [String]
        if let lease {
            problems = Self.removeNamespace(of: lease)
            if problems.isEmpty { lease.release(stateRoot: stateRoot) }
        } else {
            // Someone else's namespace: only our filter goes (the tap went with its descriptor).
            problems = [NetworkTools.attempt(["tc", "qdisc", "del", "dev", interface.name, "ingress"], in: namespacePath)]
                .compactMap { $0 }
        }
        for problem in problems { logger.warning("network clean-up: \(problem)") }
        return problems
    }

    /// A `default` network whose rund process died, as `rund gc` reports it.
    public struct Abandoned: Sendable, Encodable {
        public let namespace: String
        public let sandboxID: String
        public let address: String
    }

    /// Removes the namespaces, links and rules of `default` sandboxes whose rund process died,
    /// and gives their addresses back (with `dryRun`, only lists them). Returns them, and what
    /// could not be removed.
    public static func collectGarbage(stateRoot: String, dryRun: Bool) -> (abandoned: [Abandoned], problems: [String]) {
        var abandoned: [Abandoned] = []
        var problems: [String] = []
        for lease in AddressLease.all(stateRoot: stateRoot) where !lease.owner.isAlive {
            let found = Abandoned(namespace: lease.namespaceName, sandboxID: lease.sandboxID, address: "\(lease.guestAddress)")
            if dryRun {
                abandoned.append(found)
                continue
            }
            let failed = removeNamespace(of: lease)
            problems += failed
            if failed.isEmpty {
                lease.release(stateRoot: stateRoot)
                abandoned.append(found)
            }
        }
        return (abandoned, problems)
    }

    // MARK: Setting up

    /// `default`: the namespace, the veth pair (host end addressed .1, namespace end .2 with a
    /// fresh locally administered MAC and the default route through the host), forwarding and
    /// the NAT rule.
    static func makeNamespace(for lease: AddressLease) throws {
        let namespace = lease.namespaceName
        let host = "\(lease.hostAddress)/\(AddressLease.prefixLength)"
        // `ip netns add` makes /run/netns but not /run (a minimal root may have none).
        try FileSystem.makeDirectories("/run/netns")
        try NetworkTools.run(["ip", "netns", "add", namespace])
        try NetworkTools.run(["ip", "link", "add", lease.hostLink, "type", "veth", "peer", "name", guestLinkName, "netns", namespace])
        try NetworkTools.run(["ip", "-n", namespace, "link", "set", guestLinkName, "address", MACAddress.text(try randomMAC())])
        try NetworkTools.run(["ip", "addr", "add", host, "dev", lease.hostLink])
        try NetworkTools.run(["ip", "link", "set", lease.hostLink, "up"])
        try NetworkTools.run([
            "ip", "-n", namespace, "addr", "add", "\(lease.guestAddress)/\(AddressLease.prefixLength)", "dev", guestLinkName,
        ])
        try NetworkTools.run(["ip", "-n", namespace, "link", "set", guestLinkName, "up"])
        try NetworkTools.run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        try NetworkTools.run(["ip", "-n", namespace, "route", "add", "default", "via", "\(lease.hostAddress)"])
        try enableForwarding()
        try NetworkTools.run(["iptables", "-w"] + natRule(lease, action: "-A"))
    }

    /// The tap in the namespace (up, with the interface's MTU) and the two redirect filters.
    static func attachTap(in namespace: String, interfaceName: String?) throws -> (TapDevice, InterfaceConfiguration) {
        let interface = try InterfaceConfiguration.read(in: namespace, name: interfaceName, skipping: [tapName])
        let tap = try NetworkNamespace.run(in: namespace) { try TapDevice(name: tapName) }
        do {
            try NetworkTools.run(["ip", "link", "set", tap.name, "mtu", "\(interface.mtu)", "up"], in: namespace)
            for (from, to) in [(interface.name, tap.name), (tap.name, interface.name)] {
                try NetworkTools.run(["tc", "qdisc", "add", "dev", from, "ingress"], in: namespace)
                try NetworkTools.run(
                    [
                        "tc", "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
                        "action", "mirred", "egress", "redirect", "dev", to,
                    ], in: namespace)
            }
        } catch {
            tap.file.close()
            _ = NetworkTools.attempt(["tc", "qdisc", "del", "dev", interface.name, "ingress"], in: namespace)
            throw error
        }
        return (tap, interface)
    }

    /// Everything `makeNamespace` made for `lease`, each step tried even when one before failed;
    /// what is already gone is not a problem.
    static func removeNamespace(of lease: AddressLease) -> [String] {
        var problems: [String] = []
        // The rule may be there once, or (after a crash mid-setup) not at all.
        while NetworkTools.attempt(["iptables", "-w", "-C"] + natRule(lease, action: nil)) == nil {
            if let problem = NetworkTools.attempt(["iptables", "-w"] + natRule(lease, action: "-D")) {
                problems.append(problem)
                break
            }
        }
        if FileSystem.exists(lease.namespacePath), let problem = NetworkTools.attempt(["ip", "netns", "del", lease.namespaceName]) {
            problems.append(problem)
        }
        // Deleting the namespace deletes the veth pair, but not always before we look.
        if FileSystem.exists("/sys/class/net/" + lease.hostLink),
            let problem = NetworkTools.attempt(["ip", "link", "del", lease.hostLink]),
            FileSystem.exists("/sys/class/net/" + lease.hostLink)
        {
            problems.append(problem)
        }
        return problems
    }

    /// The POSTROUTING rule that masquerades the sandbox's traffic leaving by any other link.
    static func natRule(_ lease: AddressLease, action: String?) -> [String] {
        (action.map { [$0] } ?? []) + [
            "POSTROUTING", "-t", "nat", "-s", "\(lease.guestAddress)/32", "!", "-o", lease.hostLink, "-m", "comment",
            "--comment", lease.ruleComment, "-j", "MASQUERADE",
        ]
    }

    static func enableForwarding() throws {
        let file = try FileDescriptor.open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC)
        defer { file.close() }
        try file.writeAll("1\n")
    }

    /// A locally administered unicast MAC (02:xx:xx:xx:xx:xx).
    static func randomMAC() throws -> [UInt8] {
        [0x02] + (try KernelRandom.bytes(5))
    }

    /// The host's nameservers that a guest can reach (loopback resolvers, such as
    /// systemd-resolved's 127.0.0.53, are the host's own and left out).
    static func hostNameservers() -> [IPv4Address] {
        guard let file = try? FileDescriptor.open("/etc/resolv.conf", O_RDONLY | O_CLOEXEC) else { return [] }
        defer { file.close() }
        let text = (try? file.readValue(capacity: 64 << 10)) ?? ""
        return text.split(separator: "\n").compactMap { line -> IPv4Address? in
            let words = line.split(separator: " ")
            guard words.count >= 2, words[0] == "nameserver", let address = IPv4Address(words[1]), !address.isLoopback else { return nil }
            return address
        }.prefix(3).map { $0 }
    }
}
