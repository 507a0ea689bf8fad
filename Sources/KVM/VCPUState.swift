#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS
import StateCoding

/// Everything KVM holds for one vCPU that a paused guest needs to go on elsewhere: taken with
/// `VCPU.saveState`, put back into a fresh vCPU with `VCPU.restoreState`. The kernel structs
/// are kept as KVM hands them out (their meaning is KVM's to check when they are set again).
public struct VCPUState: Sendable {
    /// KVM_MP_STATE_*.
    public var mpState: UInt32
    public var registers: kvm_regs
    public var specialRegisters: kvm_sregs
    /// The XSAVE area (x87, SSE, AVX...): `KVMSystem.xsaveSize` bytes, laid out as this
    /// host's CPUID leaf 0xD says.
    public var xsave: [UInt8]
    public var extendedControlRegisters: kvm_xcrs
    public var debugRegisters: kvm_debugregs
    public var localAPIC: kvm_lapic_state
    /// The MSRs in `SnapshotMSRs`, as read; TSC_DEADLINE among them is put back last.
    public var msrs: [MSREntry]
    /// Pending exception, interrupt and NMI, interrupt shadow, SMM: put back last.
    public var events: kvm_vcpu_events
    /// CPUID as installed in the vCPU (read back, never a cached copy).
    public var cpuid: [kvm_cpuid_entry2]
    /// The guest TSC's rate, or nil where KVM cannot say (an unstable TSC under emulation).
    public var tscKHz: UInt32?

    public static let maxMSRs = 256
    public static let maxCPUIDEntries = 256
    /// Far above any XSAVE area today (4 KiB, or 11 KiB with AMX), so a hostile size cannot
    /// make the decoder allocate much.
    public static let maxXSAVESize = 64 << 10
}

/// One MSR and its value.
public struct MSREntry: Sendable, Equatable, StateCodable {
    public var index: UInt32
    public var value: UInt64

    public init(index: UInt32, value: UInt64) {
        self.index = index
        self.value = value
    }

    public func encode(to writer: inout StateWriter) {
        writer.put(index)
        writer.put(value)
    }

    public init(from reader: inout StateReader) throws(StateDecodingError) {
        index = try reader.read(UInt32.self, "MSR index")
        value = try reader.read(UInt64.self, "MSR value")
    }
}

extension VCPUState: StateCodable {
    public func encode(to writer: inout StateWriter) {
        writer.put(mpState)
        writer.put(abi: registers)
        writer.put(abi: specialRegisters)
        writer.put(bytes: xsave)
        writer.put(abi: extendedControlRegisters)
        writer.put(abi: debugRegisters)
        writer.put(abi: localAPIC)
        writer.put(array: msrs)
        writer.put(abi: events)
        writer.put(UInt32(clamping: cpuid.count))
        for entry in cpuid { writer.put(abi: entry) }
        writer.put(tscKHz != nil)
        writer.put(tscKHz ?? 0)
    }

    /// Decodes and checks what can be checked without KVM: counts and sizes within bounds, a
    /// known MP state, MSRs only from `SnapshotMSRs`, at most KVM's number of XCRs.
    public init(from reader: inout StateReader) throws(StateDecodingError) {
        mpState = try reader.read(UInt32.self, "vCPU MP state")
        guard mpState <= UInt32(KVM_MP_STATE_AP_RESET_HOLD) else {
            throw .invalid(what: "vCPU MP state", detail: "\(mpState) is not a KVM_MP_STATE value")
        }
        registers = try reader.readABI(kvm_regs.self, "vCPU registers")
        specialRegisters = try reader.readABI(kvm_sregs.self, "vCPU special registers")
        xsave = try reader.readBytes("vCPU XSAVE area", limit: Self.maxXSAVESize)
        guard xsave.count >= MemoryLayout<kvm_xsave>.size else {
            throw .sizeMismatch(what: "vCPU XSAVE area", size: xsave.count, expected: MemoryLayout<kvm_xsave>.size)
        }
        extendedControlRegisters = try reader.readABI(kvm_xcrs.self, "vCPU XCRs")
        guard extendedControlRegisters.nr_xcrs <= UInt32(KVM_MAX_XCRS) else {
            throw .invalid(what: "vCPU XCRs", detail: "\(extendedControlRegisters.nr_xcrs) registers, KVM has at most \(KVM_MAX_XCRS)")
        }
        debugRegisters = try reader.readABI(kvm_debugregs.self, "vCPU debug registers")
        localAPIC = try reader.readABI(kvm_lapic_state.self, "vCPU local APIC")
        msrs = try reader.readArray(MSREntry.self, "vCPU MSRs", limit: Self.maxMSRs)
        if let foreign = msrs.first(where: { !SnapshotMSRs.isSaved($0.index) }) {
            throw .invalid(what: "vCPU MSRs", detail: "MSR 0x\(String(foreign.index, radix: 16)) is not one rund saves")
        }
        events = try reader.readABI(kvm_vcpu_events.self, "vCPU events")
        let entries = Int(try reader.read(UInt32.self, "vCPU CPUID"))
        guard entries <= Self.maxCPUIDEntries else {
            throw .tooMany(what: "vCPU CPUID", count: UInt64(entries), limit: Self.maxCPUIDEntries)
        }
        cpuid = []
        for _ in 0..<entries { cpuid.append(try reader.readABI(kvm_cpuid_entry2.self, "vCPU CPUID entry")) }
        let hasRate = try reader.readBool("vCPU TSC rate")
        let rate = try reader.read(UInt32.self, "vCPU TSC rate")
        tscKHz = hasRate ? rate : nil
    }
}

/// The MSRs a snapshot carries: the architectural ones a running kernel set up (system call
/// entry points, TSC and its deadline, PAT and MTRRs, speculation control) and KVM's
/// paravirtual ones (kvmclock, async page faults, steal time, PV EOI). Of these, only the ones
/// the host's KVM lists in KVM_GET_MSR_INDEX_LIST are read.
public enum SnapshotMSRs {
    public static let tsc: UInt32 = 0x10
    public static let tscDeadline: UInt32 = 0x6e0

    static let ranges: [ClosedRange<UInt32>] = [
        0x10...0x10,  // TSC
        0x11...0x12,  // KVM's legacy wall clock and system time
        0x3b...0x3b,  // TSC_ADJUST
        0x48...0x48,  // SPEC_CTRL
        0x174...0x176,  // SYSENTER_CS, ESP, EIP
        0x1a0...0x1a0,  // MISC_ENABLE
        0x200...0x2ff,  // MTRRs, PAT
        0x6e0...0x6e0,  // TSC_DEADLINE
        0xda0...0xda0,  // XSS
        0xc000_0081...0xc000_0084,  // STAR, LSTAR, CSTAR, SYSCALL_MASK
        0xc000_0102...0xc000_0103,  // KERNEL_GS_BASE, TSC_AUX
        0x4b56_4d00...0x4b56_4dff,  // kvmclock, async PF, steal time, PV EOI, poll control
    ]

    public static func isSaved(_ index: UInt32) -> Bool {
        ranges.contains { $0.contains(index) }
    }

    /// The MSRs to save on this host: KVM's list, filtered.
    public static func indices(from kvmList: [UInt32]) -> [UInt32] {
        kvmList.filter(isSaved)
    }
}

/// Why a saved vCPU or VM state could not be taken or put back.
public struct KVMStateError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension VCPU {
    /// Takes the vCPU's whole state. The vCPU must not be running (its thread parked outside
    /// KVM_RUN, after a KVM_RUN that returned EINTR so no I/O is half done), and every other
    /// vCPU of the VM must be stopped too (vCPU events are not safe to read otherwise).
    public func saveState(msrIndices: [UInt32], xsaveSize: Int) throws -> VCPUState {
        // MP state first: reading it makes the LAPIC accept pending INIT/SIPI events.
        let mpState = try mpState()
        let registers = try registers()
        let specialRegisters = try specialRegisters()
        let xsave = try xsaveArea(size: xsaveSize)
        var xcrs = kvm_xcrs()
        try fd.ioctl("KVM_GET_XCRS", rund_KVM_GET_XCRS(), &xcrs)
        var debug = kvm_debugregs()
        try fd.ioctl("KVM_GET_DEBUGREGS", rund_KVM_GET_DEBUGREGS(), &debug)
        var lapic = kvm_lapic_state()
        try fd.ioctl("KVM_GET_LAPIC", rund_KVM_GET_LAPIC(), &lapic)
        let cpuid = try installedCPUID()
        var msrs = try readableMSRs(msrIndices)
        // A deadline of 0 while the LVT timer is in TSC-deadline mode means the timer fired and
        // its interrupt is pending; put back as 0 the vCPU would never get another tick. The
        // current TSC instead fires it at once (a spurious tick at worst).
        if let deadline = msrs.firstIndex(where: { $0.index == SnapshotMSRs.tscDeadline }), msrs[deadline].value == 0,
            lapic.isTimerInDeadlineMode, let tsc = msrs.first(where: { $0.index == SnapshotMSRs.tsc })
        {
            msrs[deadline].value = tsc.value
        }
        let rate = try? fd.ioctl("KVM_GET_TSC_KHZ", rund_KVM_GET_TSC_KHZ(), value: 0)
        var events = kvm_vcpu_events()
        try fd.ioctl("KVM_GET_VCPU_EVENTS", rund_KVM_GET_VCPU_EVENTS(), &events)
        return VCPUState(
            mpState: mpState, registers: registers, specialRegisters: specialRegisters, xsave: xsave,
            extendedControlRegisters: xcrs, debugRegisters: debug, localAPIC: lapic, msrs: msrs,
            events: events, cpuid: cpuid, tscKHz: rate.flatMap { $0 > 0 ? UInt32(exactly: $0) : nil })
    }

    /// Puts `state` into this vCPU, which must be fresh (never run: KVM refuses a CPUID change
    /// after KVM_RUN). The order matters: CPUID first (it decides which features and MSRs are
    /// valid); registers before events (setting registers clears a pending exception); special
    /// registers before the LAPIC (they carry the APIC base); the LAPIC before the MSRs (a
    /// TSC-deadline write is dropped unless the timer is in deadline mode); the TSC before its
    /// deadline; events last.
    public func restoreState(_ state: VCPUState) throws {
        try setCPUID(state.cpuid)
        if let rate = state.tscKHz { try matchTSCRate(rate) }
        var mp = kvm_mp_state(mp_state: state.mpState)
        try fd.ioctl("KVM_SET_MP_STATE", rund_KVM_SET_MP_STATE(), &mp)
        try setRegisters(state.registers)
        try setSpecialRegisters(state.specialRegisters)
        try setXSAVEArea(state.xsave)
        var xcrs = state.extendedControlRegisters
        try fd.ioctl("KVM_SET_XCRS", rund_KVM_SET_XCRS(), &xcrs)
        var debug = state.debugRegisters
        try fd.ioctl("KVM_SET_DEBUGREGS", rund_KVM_SET_DEBUGREGS(), &debug)
        var lapic = state.localAPIC
        try fd.ioctl("KVM_SET_LAPIC", rund_KVM_SET_LAPIC(), &lapic)
        let deadline = state.msrs.filter { $0.index == SnapshotMSRs.tscDeadline }
        for batch in [state.msrs.filter { $0.index != SnapshotMSRs.tscDeadline }, deadline] where !batch.isEmpty {
            let accepted = try setMSRs(batch.map { (index: $0.index, value: $0.value) })
            guard accepted == batch.count else {
                let refused = batch[max(0, min(accepted, batch.count - 1))].index
                throw KVMStateError("KVM refused MSR 0x\(String(refused, radix: 16)) of vCPU \(id)")
            }
        }
        var events = state.events
        try fd.ioctl("KVM_SET_VCPU_EVENTS", rund_KVM_SET_VCPU_EVENTS(), &events)
    }

    /// Tells the guest's kvmclock that the vCPU was paused, so its soft-lockup watchdog does not
    /// count the pause. A guest that never enabled kvmclock makes KVM refuse (EINVAL): ignored.
    public func notifyClockPaused() {
        _ = try? fd.ioctl("KVM_KVMCLOCK_CTRL", rund_KVM_KVMCLOCK_CTRL(), value: 0)
    }

    public func setMPState(_ state: UInt32) throws {
        var mp = kvm_mp_state(mp_state: state)
        try fd.ioctl("KVM_SET_MP_STATE", rund_KVM_SET_MP_STATE(), &mp)
    }

    // MARK: pieces

    /// KVM_GET_XSAVE2 (KVM_GET_XSAVE where the VM's size is the 4 KiB legacy one).
    func xsaveArea(size: Int) throws -> [UInt8] {
        var area = [UInt8](repeating: 0, count: max(size, MemoryLayout<kvm_xsave>.size))
        let large = area.count > MemoryLayout<kvm_xsave>.size
        try area.withUnsafeMutableBytes { raw in
            if large {
                _ = try fd.ioctl("KVM_GET_XSAVE2", rund_KVM_GET_XSAVE2(), raw.baseAddress)
            } else {
                _ = try fd.ioctl("KVM_GET_XSAVE", rund_KVM_GET_XSAVE(), raw.baseAddress)
            }
        }
        return area
    }

    func setXSAVEArea(_ area: [UInt8]) throws {
        // KVM reads as many bytes as the VM's KVM_CAP_XSAVE2 size: the caller checked the length.
        var copy = area
        try copy.withUnsafeMutableBytes { raw in
            _ = try fd.ioctl("KVM_SET_XSAVE", rund_KVM_SET_XSAVE(), raw.baseAddress)
        }
    }

    /// KVM_GET_CPUID2: the entries as installed, trailing all-zero entries dropped.
    func installedCPUID() throws -> [kvm_cpuid_entry2] {
        var capacity: UInt32 = 128
        while true {
            let buffer = CPUIDBuffer(capacity: capacity)
            do {
                try fd.ioctl("KVM_GET_CPUID2", rund_KVM_GET_CPUID2(), buffer.raw)
                return buffer.entries
            } catch let error as SystemError where error.errno == E2BIG && capacity < 1024 {
                capacity *= 2
            }
        }
    }

    /// Reads `indices`; KVM stops at the first MSR it cannot read, which is skipped.
    func readableMSRs(_ indices: [UInt32]) throws -> [MSREntry] {
        var result: [MSREntry] = []
        var pending = indices[...]
        while !pending.isEmpty {
            // Under 256 entries per call (KVM answers E2BIG above).
            let batch = Array(pending.prefix(128))
            let read = try msrs(batch)
            result += read.map { MSREntry(index: $0.index, value: $0.value) }
            pending = pending.dropFirst(read.count < batch.count ? read.count + 1 : batch.count)
        }
        return result
    }

    /// Sets the guest TSC rate to the saved one when this host's differs by more than 250 ppm
    /// (what Linux tolerates); a host that cannot scale refuses the restore.
    func matchTSCRate(_ saved: UInt32) throws {
        guard let current = try? fd.ioctl("KVM_GET_TSC_KHZ", rund_KVM_GET_TSC_KHZ(), value: 0), current > 0 else { return }
        let difference = abs(Int64(current) - Int64(saved))
        guard difference * 4000 > Int64(saved) else { return }
        do {
            try fd.ioctl("KVM_SET_TSC_KHZ", rund_KVM_SET_TSC_KHZ(), value: UInt(saved))
        } catch {
            throw KVMStateError(
                "the guest's TSC ran at \(saved) kHz, this host's runs at \(current) kHz and KVM cannot scale it (\(error))")
        }
    }
}

extension kvm_lapic_state {
    /// LVT timer (offset 0x320) mode bits 17-18 == 2: TSC-deadline.
    var isTimerInDeadlineMode: Bool {
        withUnsafeBytes(of: regs) { raw in
            let lvt = UInt32(raw[0x320]) | UInt32(raw[0x321]) << 8 | UInt32(raw[0x322]) << 16 | UInt32(raw[0x323]) << 24
            return (lvt >> 17) & 3 == 2
        }
    }
}
