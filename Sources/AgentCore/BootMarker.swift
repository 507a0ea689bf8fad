#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// Tells rund's VMM that the agent is ready: one write to the boot-marker page (the guest
/// address of `VMMAddresses.bootMarker`; AgentCore runs in the guest and does not link VMM).
/// The VMM timestamps the first write, which `rund bench` can read as "agent ready".
public enum BootMarker {
    public static let address: UInt64 = 0xd100_0000

    /// Writes through /dev/mem; on a VMM without the marker the write lands on nothing.
    public static func signalReady() throws {
        let memory = try FileDescriptor.open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC)
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard let page = mmap(nil, pageSize, PROT_WRITE, MAP_SHARED, memory.rawValue, off_t(address)), page != MAP_FAILED else {
            throw SystemError.last("mmap", subject: "/dev/mem at 0x\(String(address, radix: 16))")
        }
        page.storeBytes(of: 1, as: UInt8.self)
        munmap(page, pageSize)
    }
}
