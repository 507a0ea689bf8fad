#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS

/// One virtual CPU. `run()` must be called from a single thread at a time; `kick()` may be
/// called from any thread to make a running `run()` return `.interrupted`.
public final class VCPU: @unchecked Sendable {
    public let id: UInt32
    let fd: FileDescriptor
    let runPage: UnsafeMutablePointer<kvm_run>
    let runPageSize: Int
    /// Set by `close()`; only touched once no thread runs the vCPU any more.
    private var closed = false

    init(id: UInt32, fd: FileDescriptor, mmapSize: Int) throws {
        self.id = id
        self.fd = fd
        runPageSize = mmapSize
        let p = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0)
        guard let p, p != MAP_FAILED else { throw SystemError.last("mmap", subject: "kvm_run of vCPU \(id)") }
        runPage = p.assumingMemoryBound(to: kvm_run.self)
    }

    deinit {
        if !closed { munmap(runPage, runPageSize) }
    }

    /// Gives up the vCPU's kernel object (its run page and descriptor hold the VM alive). Only
    /// once no thread runs it and none will.
    public func close() {
        guard !closed else { return }
        closed = true
        munmap(runPage, runPageSize)
        fd.close()
    }

    /// Why `run()` returned. Buffers point into the kvm_run page and are valid until the next `run()`.
    public enum Exit {
        /// Port I/O. For `in`, fill `data`; `count` > 1 for string instructions (`rep ins/outs`).
        case io(port: UInt16, isWrite: Bool, size: Int, count: Int, data: UnsafeMutableRawBufferPointer)
        /// MMIO outside any memory slot. For reads, fill `data`.
        case mmio(address: UInt64, isWrite: Bool, data: UnsafeMutableRawBufferPointer)
        case halt
        /// Triple fault or similar: the guest cannot continue.
        case shutdown
        /// KVM_SYSTEM_EVENT_* (shutdown, reset, crash).
        case systemEvent(type: UInt32)
        /// A signal or `kick()` interrupted KVM_RUN.
        case interrupted
        case failEntry(reason: UInt64)
        case internalError(suberror: UInt32)
        case unhandled(reason: UInt32)
    }

    public func run() throws -> Exit {
        if rund_ioctl_int(fd.rawValue, rund_KVM_RUN(), 0) < 0 {
            let code = errno
            if code == EINTR || code == EAGAIN {
                rund_kvm_run_set_immediate_exit(runPage, 0)
                return .interrupted
            }
            throw SystemError("KVM_RUN", errno: code, subject: "vCPU \(id)")
        }
        let run = runPage
        switch Int32(run.pointee.exit_reason) {
        case KVM_EXIT_IO:
            let size = Int(rund_kvm_run_io_size(run))
            let count = Int(rund_kvm_run_io_count(run))
            let data = UnsafeMutableRawBufferPointer(start: rund_kvm_run_io_data(run), count: size * count)
            return .io(
                port: rund_kvm_run_io_port(run), isWrite: rund_kvm_run_io_direction(run) == UInt8(KVM_EXIT_IO_OUT),
                size: size, count: count, data: data)
        case KVM_EXIT_MMIO:
            let length = min(Int(rund_kvm_run_mmio_length(run)), 8)
            let data = UnsafeMutableRawBufferPointer(start: rund_kvm_run_mmio_data(run), count: length)
            return .mmio(address: rund_kvm_run_mmio_address(run), isWrite: rund_kvm_run_mmio_is_write(run) != 0, data: data)
        case KVM_EXIT_HLT: return .halt
        case KVM_EXIT_SHUTDOWN: return .shutdown
        case KVM_EXIT_SYSTEM_EVENT: return .systemEvent(type: rund_kvm_run_system_event_type(run))
        case KVM_EXIT_INTR: return .interrupted
        case KVM_EXIT_FAIL_ENTRY: return .failEntry(reason: rund_kvm_run_fail_entry_reason(run))
        case KVM_EXIT_INTERNAL_ERROR: return .internalError(suberror: rund_kvm_run_internal_suberror(run))
        default: return .unhandled(reason: run.pointee.exit_reason)
        }
    }

    /// Makes the next or current KVM_RUN return promptly: sets `immediate_exit`; the caller also
    /// signals the vCPU's thread so a blocked KVM_RUN sees it.
    public func requestExit() {
        rund_kvm_run_set_immediate_exit(runPage, 1)
    }

    // MARK: register state

    public func registers() throws -> kvm_regs {
        var regs = kvm_regs()
        try fd.ioctl("KVM_GET_REGS", rund_KVM_GET_REGS(), &regs)
        return regs
    }

    public func setRegisters(_ regs: kvm_regs) throws {
        var regs = regs
        try fd.ioctl("KVM_SET_REGS", rund_KVM_SET_REGS(), &regs)
    }

    public func specialRegisters() throws -> kvm_sregs {
        var sregs = kvm_sregs()
        try fd.ioctl("KVM_GET_SREGS", rund_KVM_GET_SREGS(), &sregs)
        return sregs
    }

    public func setSpecialRegisters(_ sregs: kvm_sregs) throws {
        var sregs = sregs
        try fd.ioctl("KVM_SET_SREGS", rund_KVM_SET_SREGS(), &sregs)
    }

    public func fpu() throws -> kvm_fpu {
        var fpu = kvm_fpu()
        try fd.ioctl("KVM_GET_FPU", rund_KVM_GET_FPU(), &fpu)
        return fpu
    }

    public func setFPU(_ fpu: kvm_fpu) throws {
        var fpu = fpu
        try fd.ioctl("KVM_SET_FPU", rund_KVM_SET_FPU(), &fpu)
    }

    public func setCPUID(_ entries: [kvm_cpuid_entry2]) throws {
        let buffer = CPUIDBuffer(entries: entries)
        try fd.ioctl("KVM_SET_CPUID2", rund_KVM_SET_CPUID2(), buffer.raw)
    }

    /// Sets MSRs; returns how many KVM accepted (it stops at the first it refuses).
    @discardableResult
    public func setMSRs(_ entries: [(index: UInt32, value: UInt64)]) throws -> Int {
        let buffer = MSRBuffer(entries)
        return Int(try fd.ioctl("KVM_SET_MSRS", rund_KVM_SET_MSRS(), buffer.raw))
    }

    /// Reads the given MSRs; missing ones are omitted from the result.
    public func msrs(_ indices: [UInt32]) throws -> [(index: UInt32, value: UInt64)] {
        let buffer = MSRBuffer(indices.map { (index: $0, value: UInt64(0)) })
        let read = Int(try fd.ioctl("KVM_GET_MSRS", rund_KVM_GET_MSRS(), buffer.raw))
        return Array(buffer.entries.prefix(read))
    }

    public func mpState() throws -> UInt32 {
        var state = kvm_mp_state()
        try fd.ioctl("KVM_GET_MP_STATE", rund_KVM_GET_MP_STATE(), &state)
        return state.mp_state
    }
}

/// A heap buffer shaped as `struct kvm_msrs`.
final class MSRBuffer {
    let raw: UnsafeMutableRawPointer
    let count: Int

    init(_ entries: [(index: UInt32, value: UInt64)]) {
        count = entries.count
        let size = rund_kvm_msrs_size(UInt32(entries.count))
        raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        raw.assumingMemoryBound(to: kvm_msrs.self).pointee.nmsrs = UInt32(entries.count)
        let first = (raw + MemoryLayout<kvm_msrs>.size).assumingMemoryBound(to: kvm_msr_entry.self)
        for (i, entry) in entries.enumerated() {
            first[i].index = entry.index
            first[i].data = entry.value
        }
    }

    deinit { raw.deallocate() }

    var entries: [(index: UInt32, value: UInt64)] {
        let first = (raw + MemoryLayout<kvm_msrs>.size).assumingMemoryBound(to: kvm_msr_entry.self)
        return (0..<count).map { (index: first[$0].index, value: first[$0].data) }
    }
}
