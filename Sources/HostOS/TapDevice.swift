#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Synchronization

/// A tap device (a virtual Ethernet link whose frames a process reads and writes), opened with
/// the virtio-net header in front of every frame (IFF_VNET_HDR) so checksum and segmentation
/// offloads pass through unchanged.
public final class TapDevice: Sendable {
    public let file: FileDescriptor
    /// The link's name in its network namespace.
    public let name: String

    /// The 12-byte `virtio_net_hdr_v1` (num_buffers included) every frame carries.
    public static let virtioHeaderLength: Int32 = 12

    /// Creates (or attaches to) the tap `name` in the calling thread's network namespace,
    /// non-blocking, with no packet-information prefix and the 12-byte virtio-net header.
    public init(name: String) throws {
        guard !name.isEmpty, name.utf8.count < Int(IFNAMSIZ), !name.contains("/"), !name.contains(" ") else {
            throw SystemError("TUNSETIFF", errno: EINVAL, subject: "tap name \(name)")
        }
        let file = try FileDescriptor.open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)
        var actual = [CChar](repeating: 0, count: Int(IFNAMSIZ) + 1)
        let flags = rund_IFF_TAP() | rund_IFF_NO_PI() | rund_IFF_VNET_HDR()
        _ = try retryingInterrupts("TUNSETIFF", subject: name) { rund_tun_attach(file.rawValue, name, flags, &actual) }
        var headerLength = Self.virtioHeaderLength
        _ = try file.ioctl("TUNSETVNETHDRSZ", rund_TUNSETVNETHDRSZ(), &headerLength)
        self.file = file
        self.name = String(decoding: actual.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        try setOffloads(checksum: false, tcpSegmentationV4: false, tcpSegmentationV6: false)
    }

    /// Which offloaded frames the tap may hand us: partial checksums and TCP segments up to
    /// 64 KiB, as the guest's driver accepts them (off: only whole, checksummed frames).
    public func setOffloads(checksum: Bool, tcpSegmentationV4: Bool, tcpSegmentationV6: Bool) throws {
        var flags: UInt32 = 0
        if checksum { flags |= rund_TUN_F_CSUM() }
        if checksum && tcpSegmentationV4 { flags |= rund_TUN_F_TSO4() }
        if checksum && tcpSegmentationV6 { flags |= rund_TUN_F_TSO6() }
        _ = try file.ioctl("TUNSETOFFLOAD", rund_TUNSETOFFLOAD(), value: UInt(flags))
    }

    /// Reads one frame (header first) into `buffer`; nil when none is waiting.
    public func receive(into buffer: UnsafeMutableRawBufferPointer) throws -> Int? {
        let count = Glibc.read(file.rawValue, buffer.baseAddress, buffer.count)
        if count >= 0 { return count }
        let code = errno
        if code == EAGAIN || code == EINTR { return nil }
        throw SystemError("read", errno: code, subject: "tap \(name)")
    }
}

extension FileDescriptor {
    /// poll(2) for readability on `descriptors` (a nil entry is skipped), waiting at most
    /// `milliseconds` (-1: no limit). Returns which are readable (or hung up).
    public static func pollReadable(_ descriptors: [FileDescriptor?], milliseconds: Int32) throws -> [Bool] {
        var requests = descriptors.map { pollfd(fd: $0?.rawValue ?? -1, events: Int16(POLLIN), revents: 0) }
        _ = try retryingInterrupts("poll") { poll(&requests, nfds_t(requests.count), milliseconds) }
        return requests.map { $0.revents != 0 }
    }
}

/// A raw packet socket on one interface (every EtherType): frames sent go out of the interface,
/// frames received are those that came in on it. For tests and diagnostics of a sandbox's link.
public final class PacketSocket: Sendable {
    public let file: FileDescriptor

    /// Opens it on interface `name` of the calling thread's network namespace.
    public init(interface name: String) throws {
        file = FileDescriptor(adopting: try retryingInterrupts("socket(AF_PACKET)", subject: name) { rund_packet_socket(name) })
    }

    public func send(_ frame: [UInt8]) throws {
        let sent = try frame.withUnsafeBytes { bytes in
            try retryingInterrupts("send", subject: "packet socket") { Glibc.send(file.rawValue, bytes.baseAddress, bytes.count, 0) }
        }
        guard sent == frame.count else { throw SystemError("send", errno: EMSGSIZE, subject: "packet socket (short)") }
    }

    /// The next frame that came in (frames the interface itself sent are skipped), or nil when
    /// none comes within `milliseconds`.
    public func receive(milliseconds: Int32) throws -> [UInt8]? {
        while try file.waitReadable(milliseconds: milliseconds) {
            var buffer = [UInt8](repeating: 0, count: 1 << 17)
            var outgoing: Int32 = 0
            let count = try buffer.withUnsafeMutableBytes { bytes in
                try retryingInterrupts("recvfrom", subject: "packet socket") {
                    rund_packet_receive(file.rawValue, bytes.baseAddress, UInt(bytes.count), &outgoing)
                }
            }
            if outgoing != 0 { continue }
            return Array(buffer.prefix(count))
        }
        return nil
    }
}
