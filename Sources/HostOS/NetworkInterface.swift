#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// A network interface of the calling thread's network namespace, set up with the classic
/// interface and routing ioctls (IPv4 only). Each call opens its own socket, so it acts in the
/// namespace of the thread that makes it.
public struct NetworkInterface: Hashable, Sendable, CustomStringConvertible {
    public let name: String

    public init(name: String) {
        self.name = name
    }

    public static let loopback = NetworkInterface(name: "lo")

    public var description: String { name }

    /// Every interface, in index order.
    public static func all() throws -> [NetworkInterface] {
        guard let list = rund_interface_list() else { throw SystemError.last("if_nameindex") }
        defer { if_freenameindex(list) }
        var interfaces: [NetworkInterface] = []
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            interfaces.append(NetworkInterface(name: String(cString: name)))
            entry += 1
        }
        return interfaces
    }

    /// The Ethernet interface whose hardware address is `address` (6 bytes), nil when none has
    /// it (yet: a driver may still be probing).
    public static func withHardwareAddress(_ address: [UInt8]) throws -> NetworkInterface? {
        for interface in try all() {
            // Gone since the listing: not the one.
            guard let (type, bytes) = try? interface.hardwareAddress() else { continue }
            if type == UInt16(ARPHRD_ETHER), bytes == address { return interface }
        }
        return nil
    }

    /// The hardware address type (`ARPHRD_*`) and its six bytes.
    public func hardwareAddress() throws -> (type: UInt16, bytes: [UInt8]) {
        var type: UInt16 = 0
        var bytes = [UInt8](repeating: 0, count: 6)
        try call("SIOCGIFHWADDR") { socket, name in rund_interface_hardware_address(socket, name, &type, &bytes) }
        return (type, bytes)
    }

    /// Sets IFF_UP (nothing changes when it is already up).
    public func bringUp() throws {
        try call("SIOCSIFFLAGS") { socket, name in rund_interface_bring_up(socket, name) }
    }

    public func setMTU(_ mtu: Int) throws {
        guard let value = Int32(exactly: mtu) else { throw SystemError("SIOCSIFMTU", errno: EINVAL, subject: name) }
        try call("SIOCSIFMTU") { socket, name in rund_interface_set_mtu(socket, name, value) }
    }

    /// The interface's (primary) IPv4 address and its netmask. Setting it replaces the one it
    /// had; a second address would need an alias interface or netlink.
    public func setIPv4Address(_ address: IPv4Address, prefixLength: Int) throws {
        try call("SIOCSIFADDR") { socket, name in
            rund_interface_set_ipv4(socket, name, UInt(SIOCSIFADDR), address.networkOrder)
        }
        let netmask = IPv4Address(netmaskOfLength: prefixLength)
        try call("SIOCSIFNETMASK") { socket, name in
            rund_interface_set_ipv4(socket, name, UInt(SIOCSIFNETMASK), netmask.networkOrder)
        }
    }

    /// A route to destination/prefixLength through this interface: directly attached without
    /// `gateway`, else via it. EEXIST when the same route is there already.
    public func addIPv4Route(to destination: IPv4Address, prefixLength: Int, via gateway: IPv4Address?) throws {
        let netmask = IPv4Address(netmaskOfLength: prefixLength)
        let subject = "\(destination)/\(prefixLength)" + (gateway.map { " via \($0)" } ?? "") + " dev \(name)"
        let socket = try Self.controlSocket(subject: subject)
        _ = try retryingInterrupts("SIOCADDRT", subject: subject) {
            rund_add_ipv4_route(
                socket.rawValue, name, destination.networkOrder, netmask.networkOrder, gateway == nil ? 0 : 1,
                gateway?.networkOrder ?? 0)
        }
    }

    /// One ioctl on a fresh socket of the calling thread's namespace; errors name the call and
    /// the interface ("SIOCSIFMTU eth0: Invalid argument").
    private func call(_ request: String, _ body: (Int32, UnsafePointer<CChar>) -> Int32) throws {
        let socket = try Self.controlSocket(subject: name)
        _ = try retryingInterrupts(request, subject: name) { body(socket.rawValue, name) }
    }

    private static func controlSocket(subject: String) throws -> FileDescriptor {
        let fd = try retryingInterrupts("socket", subject: subject) {
            socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        }
        return FileDescriptor(adopting: fd)
    }
}
