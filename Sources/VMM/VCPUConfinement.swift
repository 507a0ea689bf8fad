#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS

/// What a vCPU thread may ask of the kernel once its guest runs. It runs the guest (KVM_RUN),
/// emulates every device on its exits (virtio-blk reads and writes its disk files, irqfd and
/// console writes, vsock moves bytes in memory), and answers the stall watchdog (register
/// reads). Opening files, sockets, processes, mappings of new files and every other ioctl are
/// refused: a guest that took over a vCPU thread could do no more than these calls.
enum VCPUConfinement {
    static let filter = SeccompFilter(
        name: "vCPU",
        allowing: SeccompFilter.threadEssentials.union(
            [
                SYS_pread64, SYS_pwrite64, SYS_preadv, SYS_pwritev, SYS_preadv2, SYS_pwritev2, SYS_readv, SYS_writev,
                SYS_fsync, SYS_fdatasync, SYS_fallocate, SYS_lseek,
            ].map { Int32($0) }),
        // TUNSETOFFLOAD: the virtio-net device follows what the guest's driver negotiates (status writes).
        ioctlRequests: [
            rund_KVM_RUN(), rund_KVM_GET_REGS(), rund_KVM_GET_SREGS(), rund_KVM_GET_MP_STATE(), rund_TUNSETOFFLOAD(),
        ].map {
            UInt32(truncatingIfNeeded: $0)
        }
        .reduce(into: []) { $0.insert($1) })
}

/// What the virtio-net I/O thread may ask of the kernel: wait (poll), read frames from the tap,
/// write them (writev straight from guest memory), signal interrupts (irqfd writes) and
/// eventfds. Nothing else: no files, sockets, processes or ioctls.
enum NetworkWorkerConfinement {
    static let filter = SeccompFilter(
        name: "virtio-net",
        allowing: SeccompFilter.threadEssentials.union([SYS_poll, SYS_ppoll, SYS_readv, SYS_writev].map { Int32($0) }),
        ioctlRequests: [])
}
