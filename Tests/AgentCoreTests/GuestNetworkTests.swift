#if canImport(Glibc)
import Glibc
#endif
@testable import AgentCore
import AgentProtocol
import FoundationEssentials
import HostOS
import Synchronization
import Testing
import TTRPC

/// The guest's network set up for real: each test builds a veth pair in a network namespace of
/// its own (made by a dedicated thread, which runs `ip` and the setup there), so the host's
/// interfaces are never touched.
@Suite struct GuestNetworkTests {
    static let ipPath: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first { (path: String) in access(path, X_OK) == 0 }
    static let canBuildNamespaces = getuid() == 0 && ipPath != nil
    static let why: Comment = "needs root (unshare(CLONE_NEWNET), ioctls that configure interfaces) and iproute2's ip"

    static let mac: [UInt8] = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56]

    /// What a sandbox would send: one address, a default route, more routes in an order the
    /// agent has to fix (the gateway routes come first), and the network's directly attached
    /// route, which the kernel already made for the address.
    static func network() -> AgentGuestNetwork {
        .with {
            $0.mac = Data(mac)
            $0.mtu = 1400
            $0.addresses = [prefix([10, 1, 2, 3], 24)]
            $0.routes = [
                route(to: prefix([0, 0, 0, 0], 0), via: [10, 1, 2, 1]),
                route(to: prefix([10, 9, 0, 0], 16), via: [10, 1, 2, 254]),
                route(to: prefix([192, 168, 50, 0], 24)),
                route(to: prefix([10, 1, 2, 0], 24)),
            ]
            $0.nameservers = [Data([10, 1, 2, 1]), Data([9, 9, 9, 9])]
            $0.searchDomains = ["pod.example", "example"]
            $0.hosts = [
                .with {
                    $0.address = Data([10, 1, 2, 7]); $0.names = ["db", "db.pod.example"]
                }
            ]
        }
    }

    static func prefix(_ address: [UInt8], _ length: UInt32) -> AgentIPv4Prefix {
        .with {
            $0.address = Data(address); $0.prefixLength = length
        }
    }

    static func route(to destination: AgentIPv4Prefix, via gateway: [UInt8] = []) -> AgentIPv4Route {
        .with {
            $0.destination = destination; $0.gateway = Data(gateway)
        }
    }

    /// Runs `body` on a new thread that first enters a new network namespace; the namespace
    /// goes away with the thread and what it spawned.
    static func inNewNetworkNamespace<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let thread = try OSThread.spawn(name: "netns-test") {
            let outcome = Result { () throws -> T in
                try NetworkNamespace.enterNewForCurrentThread()
                return try body()
            }
            result.withLock { $0 = outcome }
        }
        thread.join()
        return try result.withLock { $0! }.get()
    }

    /// `ip ARGS` from the calling thread (so in its namespace); its output.
    @discardableResult
    static func ip(_ arguments: String...) throws -> String {
        try Subprocess.checked([ipPath!] + arguments).stdoutText
    }

    /// A veth pair whose end `v0` has `mac`; the peer is up, so v0 has a carrier.
    static func addInterface(mac: [UInt8] = mac) throws {
        try ip("link", "add", "v0", "address", GuestNetworkPlan.macText(mac), "type", "veth", "peer", "name", "v1")
        try ip("link", "set", "v1", "up")
    }

    @Test(.enabled(if: canBuildNamespaces, why))
    func appliesTheMTUAddressAndRoutesToTheInterfaceWithTheMAC() throws {
        let plan = try GuestNetworkPlan(Self.network())
        let (configured, shown) = try Self.inNewNetworkNamespace { () throws -> (GuestNetworkPlan?, [String]) in
            try Self.addInterface()
            let configured = try GuestNetworkSetup(interfaceWait: .seconds(1)).configure(plan)
            return (
                configured,
                [
                    try Self.ip("-o", "link", "show", "dev", "lo"), try Self.ip("-o", "link", "show", "dev", "v0"),
                    try Self.ip("-o", "-4", "addr", "show", "dev", "v0"), try Self.ip("-4", "route", "show"),
                ]
            )
        }
        #expect(configured == plan)
        #expect(shown[0].contains(",UP"))
        #expect(shown[1].contains(",UP") && shown[1].contains(" mtu 1400 "))
        #expect(shown[2].contains("inet 10.1.2.3/24 "))
        let routes = shown[3].split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        for expected in [
            "default via 10.1.2.1 dev v0", "10.9.0.0/16 via 10.1.2.254 dev v0", "192.168.50.0/24 dev v0",
            "10.1.2.0/24 dev v0 proto kernel",
        ] {
            #expect(routes.contains { $0.hasPrefix(expected) }, "no route \(expected) in \(routes)")
        }
        // The address's own network once: the kernel's route, not a second one without its source.
        #expect(routes.filter { $0.hasPrefix("10.1.2.0/24 ") }.count == 1)
    }

    @Test(.enabled(if: canBuildNamespaces, why))
    func appliesOncePerGuestAndRefusesAnotherNetwork() throws {
        let plan = try GuestNetworkPlan(Self.network())
        var changed = Self.network()
        changed.mtu = 1500
        let other = try GuestNetworkPlan(changed)
        let (answers, refusal, link) = try Self.inNewNetworkNamespace { () throws -> ([GuestNetworkPlan?], TTRPCStatus?, String) in
            try Self.addInterface()
            let setup = GuestNetworkSetup(interfaceWait: .seconds(1))
            // None first (loopback only), then the network, then the same again and none (a
            // pod's later containers): the guest keeps what it has.
            let answers = [try setup.configure(nil), try setup.configure(plan), try setup.configure(plan), try setup.configure(nil)]
            var refusal: TTRPCStatus?
            do {
                _ = try setup.configure(other)
            } catch let status as TTRPCStatus {
                refusal = status
            }
            return (answers, refusal, try Self.ip("-o", "link", "show", "dev", "v0"))
        }
        #expect(answers == [nil, plan, plan, plan])
        #expect(refusal?.code == .failedPrecondition)
        #expect(refusal?.message.contains("already configured differently") == true)
        #expect(link.contains(" mtu 1400 "))
    }

    /// The driver may still be probing when the request comes: the interface is waited for.
    @Test(.enabled(if: canBuildNamespaces, why))
    func waitsForTheInterfaceToAppearThenGivesUpNamingTheMAC() throws {
        let plan = try GuestNetworkPlan(Self.network())
        let (absent, configured, address) = try Self.inNewNetworkNamespace { () throws -> (TTRPCStatus?, GuestNetworkPlan?, String) in
            var absent: TTRPCStatus?
            do {
                _ = try GuestNetworkSetup(interfaceWait: .milliseconds(200)).configure(plan)
            } catch let status as TTRPCStatus {
                absent = status
            }
            // Added by a process that outlives this call, a moment later.
            let ip = Self.ipPath!
            try Subprocess.checked([
                "/bin/sh", "-c",
                "(sleep 0.3; \(ip) link add v0 address 02:00:00:12:34:56 type veth peer name v1 && \(ip) link set v1 up) &",
            ])
            let configured = try GuestNetworkSetup(interfaceWait: .seconds(30)).configure(plan)
            return (absent, configured, try Self.ip("-o", "-4", "addr", "show", "dev", "v0"))
        }
        #expect(absent?.code == .failedPrecondition)
        #expect(absent?.message == "guest network: no interface with MAC 02:00:00:12:34:56 appeared within 0.2 seconds")
        #expect(configured == plan)
        #expect(address.contains("inet 10.1.2.3/24 "))
    }

    /// HostOS's interface calls fail in its usual words: the call and the interface.
    @Test(.enabled(if: canBuildNamespaces, why))
    func interfaceErrorsNameTheCallAndTheInterface() throws {
        let errors = try Self.inNewNetworkNamespace { () throws -> [String] in
            try Self.addInterface()
            var errors: [String] = []
            for body in [
                { try NetworkInterface(name: "v0").setMTU(10) }, { try NetworkInterface(name: "nope0").bringUp() },
                {
                    try NetworkInterface(name: "v0").addIPv4Route(
                        to: IPv4Address(0, 0, 0, 0), prefixLength: 0, via: IPv4Address(10, 7, 0, 1))
                },
            ] as [() throws -> Void] {
                do {
                    try body()
                    errors.append("succeeded")
                } catch {
                    errors.append("\(error)")
                }
            }
            return errors
        }
        #expect(
            errors == [
                "SIOCSIFMTU v0: Invalid argument", "SIOCSIFFLAGS nope0: No such device",
                "SIOCADDRT 0.0.0.0/0 via 10.7.0.1 dev v0: Network is unreachable",
            ])
    }

    /// Every malformed field is refused by name, and nothing in the namespace has changed:
    /// loopback still down, the interface without address or new MTU.
    @Test(.enabled(if: canBuildNamespaces, why))
    func eachMalformedFieldIsRefusedBeforeAnythingChanges() throws {
        let cases: [(String, @Sendable (inout AgentGuestNetwork) -> Void)] = [
            ("network.mac must be 6 bytes, not 5", { $0.mac = Data([2, 0, 0, 0, 1]) }),
            ("network.mac 01:00:5e:00:00:01 must be a unicast address", { $0.mac = Data([1, 0, 0x5e, 0, 0, 1]) }),
            ("network.mac 00:00:00:00:00:00 must be a unicast address", { $0.mac = Data(repeating: 0, count: 6) }),
            ("network.mtu 67 must be 68 to 65535", { $0.mtu = 67 }),
            ("network.mtu 65536 must be 68 to 65535", { $0.mtu = 65536 }),
            ("network.addresses has 2 entries", { $0.addresses.append(Self.prefix([10, 1, 3, 3], 24)) }),
            ("network.addresses[0].address must be an IPv4 address of 4 bytes, not 3", { $0.addresses[0].address = Data([10, 1, 2]) }),
            ("network.addresses[0].prefix_length 33 must be 0 to 32", { $0.addresses[0].prefixLength = 33 }),
            ("network.routes[1].destination.address must be an IPv4 address of 4 bytes, not 0", { $0.routes[1].clearDestination() }),
            ("network.routes[2].destination.prefix_length 40 must be 0 to 32", { $0.routes[2].destination.prefixLength = 40 }),
            (
                "network.routes[1].destination 10.9.0.0/8 has bits set beyond its prefix length",
                { $0.routes[1].destination.prefixLength = 8 }
            ),
            (
                "network.routes[0].gateway must be an IPv4 address of 4 bytes, not 16",
                { $0.routes[0].gateway = Data(repeating: 1, count: 16) }
            ),
            ("network.nameservers has 4 entries, at most 3", { $0.nameservers += [Data([1, 1, 1, 1]), Data([8, 8, 8, 8])] }),
            ("network.nameservers[1] must be an IPv4 address of 4 bytes, not 16", { $0.nameservers[1] = Data(repeating: 0, count: 16) }),
            ("network.search_domains has 7 entries, at most 6", { $0.searchDomains = Array(repeating: "a.example", count: 7) }),
            ("network.search_domains[1] \"\" must be 1 to 253", { $0.searchDomains[1] = "" }),
            ("network.search_domains[0] \"a b\" must be", { $0.searchDomains[0] = "a b" }),
            ("network.search_domains[0] \"x\\x0anameserver 6.6.6.6\" must be", { $0.searchDomains[0] = "x\nnameserver 6.6.6.6" }),
            (
                "network.search_domains[1] \"\(String(repeating: "a", count: 254))\" must be",
                { $0.searchDomains[1] = String(repeating: "a", count: 254) }
            ),
            (
                "network.hosts has 65 entries, at most 64",
                {
                    $0.hosts = Array(
                        repeating: .with {
                            $0.address = Data([1, 2, 3, 4]); $0.names = ["h"]
                        }, count: 65)
                }
            ),
            ("network.hosts[0].address must be an IPv4 address of 4 bytes, not 0", { $0.hosts[0].address = Data() }),
            ("network.hosts[0].names has 0 entries, 1 to 32", { $0.hosts[0].names = [] }),
            ("network.hosts[0].names[1] \"db_primary\" must be", { $0.hosts[0].names[1] = "db_primary" }),
        ]
        let (messages, after) = try Self.inNewNetworkNamespace { () throws -> ([String], [String]) in
            try Self.addInterface()
            let setup = GuestNetworkSetup(interfaceWait: .milliseconds(100))
            var messages: [String] = []
            for (_, change) in cases {
                var network = Self.network()
                change(&network)
                do {
                    _ = try setup.configure(try GuestNetworkPlan(network))
                    messages.append("accepted")
                } catch let status as TTRPCStatus {
                    messages.append(status.code == .invalidArgument ? status.message : "\(status.code): \(status.message)")
                }
            }
            let after = [
                try Self.ip("-o", "link", "show", "dev", "lo"), try Self.ip("-o", "link", "show", "dev", "v0"),
                try Self.ip("-o", "-4", "addr", "show", "dev", "v0"),
            ]
            return (messages, after)
        }
        #expect(!after[0].contains(",UP"))
        #expect(after[1].contains(" mtu 1500 "))
        #expect(after[2].isEmpty)
        for ((expected, _), message) in zip(cases, messages) {
            #expect(message.hasPrefix(expected), "expected \"\(expected)…\"")
        }
    }

    // MARK: /etc/hosts and /etc/resolv.conf

    private final class Scratch {
        let path: String

        init() throws {
            var template = Array("/tmp/rund-netfiles-XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { throw SystemError.last("mkdtemp") }
            path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }

        func read(_ name: String) throws -> String {
            String(decoding: try FileDescriptor.open(path + name, O_RDONLY).readToEnd(), as: UTF8.self)
        }

        func exists(_ name: String) -> Bool { (try? FileSystem.status(at: nil, path + name)) != nil }

        deinit { try? FileSystem.removeTree(path) }
    }

    @Test func writesHostsAndResolvConfIntoTheRootCreatingEtc() throws {
        let root = try Scratch()
        let plan = try GuestNetworkPlan(Self.network())
        try ContainerNetworkFiles.write(plan, hostname: "web-1", root: root.path)
        #expect(
            try root.read("/etc/hosts")
                == "127.0.0.1\tlocalhost\n::1\tlocalhost\n10.1.2.3\tweb-1\n10.1.2.7\tdb db.pod.example\n")
        #expect(try root.read("/etc/resolv.conf") == "nameserver 10.1.2.1\nnameserver 9.9.9.9\nsearch pod.example example\n")
        // The image's own files are replaced, not appended to.
        var bare = Self.network()
        bare.addresses = []
        bare.nameservers = []
        bare.searchDomains = []
        bare.hosts = []
        try ContainerNetworkFiles.write(try GuestNetworkPlan(bare), hostname: "web-1", root: root.path)
        #expect(try root.read("/etc/hosts") == "127.0.0.1\tlocalhost\n::1\tlocalhost\n")
        #expect(try root.read("/etc/resolv.conf") == "")
    }

    @Test func refusesLinksAndSpecialFilesTheImagePlantedAndWritesNothingOutside() throws {
        let root = try Scratch()
        let outside = try Scratch()
        let plan = try GuestNetworkPlan(Self.network())
        let rootDirectory = try FileDescriptor.openDirectory(root.path)
        try FileSystem.makeDirectory(at: rootDirectory, Array("etc".utf8), mode: 0o755)
        let etc = try FileDescriptor.openDirectory(root.path + "/etc")

        try FileSystem.symlink(at: etc, "hosts", target: outside.path + "/hosts")
        let link = try #require(throws: TTRPCStatus.self) { try ContainerNetworkFiles.write(plan, hostname: "web", root: root.path) }
        #expect(link.code == .failedPrecondition)
        #expect(link.message.hasPrefix("the image's /etc/hosts is a symbolic link, not a regular file"))
        #expect(!outside.exists("/hosts"))
        #expect(!root.exists("/etc/resolv.conf"))
        try FileSystem.unlink(at: etc, "hosts")

        // A relative link climbing out of the root.
        try FileSystem.symlink(at: etc, "hosts", target: "../../../../../../.." + outside.path + "/hosts")
        #expect(throws: TTRPCStatus.self) { try ContainerNetworkFiles.write(plan, hostname: "web", root: root.path) }
        #expect(!outside.exists("/hosts"))
        try FileSystem.unlink(at: etc, "hosts")

        try FileSystem.makeDirectory(at: etc, "resolv.conf")
        let directory = try #require(throws: TTRPCStatus.self) { try ContainerNetworkFiles.write(plan, hostname: "web", root: root.path) }
        #expect(directory.message.hasPrefix("the image's /etc/resolv.conf is a directory, not a regular file"))
        try FileSystem.unlink(at: etc, "resolv.conf", isDirectory: true)

        try FileSystem.makeNode(at: etc, "resolv.conf", mode: S_IFIFO | 0o644, device: 0)
        let fifo = try #require(throws: TTRPCStatus.self) { try ContainerNetworkFiles.write(plan, hostname: "web", root: root.path) }
        #expect(fifo.message.hasPrefix("the image's /etc/resolv.conf is a special file"))
        try FileSystem.unlink(at: etc, "resolv.conf")

        // /etc itself a link to a directory outside.
        try FileSystem.unlink(at: etc, "hosts")
        try FileSystem.unlink(at: rootDirectory, "etc", isDirectory: true)
        try FileSystem.symlink(at: rootDirectory, "etc", target: outside.path)
        let etcLink = try #require(throws: TTRPCStatus.self) { try ContainerNetworkFiles.write(plan, hostname: "web", root: root.path) }
        #expect(etcLink.message.hasPrefix("the image's /etc is a symbolic link, not a directory"))
        #expect(try FileSystem.entries(of: try FileDescriptor.openDirectory(outside.path)).isEmpty)
    }

    @Test func aHostnameThatWouldAddToEtcHostsIsRefused() throws {
        let root = try Scratch()
        let plan = try GuestNetworkPlan(Self.network())
        let refusal = try #require(throws: TTRPCStatus.self) {
            try ContainerNetworkFiles.write(plan, hostname: "web 6.6.6.6 evil", root: root.path)
        }
        #expect(refusal.code == .invalidArgument)
        #expect(!root.exists("/etc"))
    }
}
