import CLinux
import KVM

/// What one vCPU was doing when the VMM asked (the stall watchdog's report): taken on the vCPU's
/// own thread, between two KVM_RUNs, so it is the state the guest would resume from.
public struct VCPUSnapshot: Sendable, CustomStringConvertible {
    public let id: UInt32
    /// KVM_MP_STATE_*: an idle guest's vCPUs are halted, a spinning one's runnable.
    public let mpState: UInt32
    public let rip: UInt64
    public let rsp: UInt64
    public let rflags: UInt64
    public let cr0: UInt64
    public let cr2: UInt64
    public let cr3: UInt64
    public let cr4: UInt64
    public let efer: UInt64
    public let codeSelector: UInt16

    init(_ vcpu: VCPU) throws {
        id = vcpu.id
        mpState = try vcpu.mpState()
        let regs = try vcpu.registers()
        let sregs = try vcpu.specialRegisters()
        rip = regs.rip
        rsp = regs.rsp
        rflags = regs.rflags
        cr0 = sregs.cr0
        cr2 = sregs.cr2
        cr3 = sregs.cr3
        cr4 = sregs.cr4
        efer = sregs.efer
        codeSelector = sregs.cs.selector
    }

    public var isHalted: Bool { mpState == UInt32(KVM_MP_STATE_HALTED) }

    public var description: String {
        let state =
            switch Int32(mpState) {
            case KVM_MP_STATE_RUNNABLE: "runnable"
            case KVM_MP_STATE_HALTED: "halted"
            case KVM_MP_STATE_UNINITIALIZED: "waiting for INIT"
            case KVM_MP_STATE_INIT_RECEIVED: "INIT received"
            default: "mp_state \(mpState)"
            }
        func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
        return "vCPU \(id) \(state) rip=\(hex(rip)) rsp=\(hex(rsp)) rflags=\(hex(rflags)) cs=\(hex(codeSelector)) "
            + "cr0=\(hex(cr0)) cr2=\(hex(cr2)) cr3=\(hex(cr3)) cr4=\(hex(cr4)) efer=\(hex(efer))"
    }
}
