#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS
import StateCoding

/// The VM-wide state KVM emulates in the kernel: the two 8259 PICs and the IOAPIC of the
/// in-kernel irqchip, the i8254 PIT, and kvmclock's clock. Without it a restored guest hangs: a
/// new IOAPIC has every pin masked.
public struct VirtualMachineState: Sendable {
    public var picMaster: kvm_irqchip
    public var picSlave: kvm_irqchip
    public var ioapic: kvm_irqchip
    public var pit: kvm_pit_state2
    /// kvmclock's nanoseconds: a restored guest's monotonic time goes on from here.
    public var clock: UInt64

    static let chipIDs: [UInt32] = [UInt32(KVM_IRQCHIP_PIC_MASTER), UInt32(KVM_IRQCHIP_PIC_SLAVE), UInt32(KVM_IRQCHIP_IOAPIC)]
}

extension VirtualMachineState: StateCodable {
    public func encode(to writer: inout StateWriter) {
        writer.put(abi: picMaster)
        writer.put(abi: picSlave)
        writer.put(abi: ioapic)
        writer.put(abi: pit)
        writer.put(clock)
    }

    public init(from reader: inout StateReader) throws(StateDecodingError) {
        var chips: [kvm_irqchip] = []
        for (expected, name) in zip(Self.chipIDs, ["master PIC", "slave PIC", "IOAPIC"]) {
            let chip = try reader.readABI(kvm_irqchip.self, name)
            guard chip.chip_id == expected else { throw .invalid(what: name, detail: "chip id \(chip.chip_id), expected \(expected)") }
            chips.append(chip)
        }
        picMaster = chips[0]
        picSlave = chips[1]
        ioapic = chips[2]
        pit = try reader.readABI(kvm_pit_state2.self, "PIT")
        clock = try reader.read(UInt64.self, "kvmclock")
    }
}

extension VirtualMachine {
    /// Takes the irqchip, PIT and clock. Every vCPU must be stopped.
    public func saveState() throws -> VirtualMachineState {
        var chips: [kvm_irqchip] = []
        for id in VirtualMachineState.chipIDs {
            var chip = kvm_irqchip()
            chip.chip_id = id
            try fd.ioctl("KVM_GET_IRQCHIP", rund_KVM_GET_IRQCHIP(), &chip)
            chips.append(chip)
        }
        var pit = kvm_pit_state2()
        try fd.ioctl("KVM_GET_PIT2", rund_KVM_GET_PIT2(), &pit)
        var clock = kvm_clock_data()
        try fd.ioctl("KVM_GET_CLOCK", rund_KVM_GET_CLOCK(), &clock)
        return VirtualMachineState(picMaster: chips[0], picSlave: chips[1], ioapic: chips[2], pit: pit, clock: clock.clock)
    }

    /// Puts the state back, after the vCPUs' and before any vCPU runs. The clock is set without
    /// KVM_CLOCK_REALTIME: the guest's monotonic time resumes where it stopped rather than
    /// jumping by the snapshot's age (which would expire every timer at once); the guest's wall
    /// clock is stepped by its agent instead.
    public func restoreState(_ state: VirtualMachineState) throws {
        var pit = state.pit
        try fd.ioctl("KVM_SET_PIT2", rund_KVM_SET_PIT2(), &pit)
        var clock = kvm_clock_data()
        clock.clock = state.clock
        try fd.ioctl("KVM_SET_CLOCK", rund_KVM_SET_CLOCK(), &clock)
        for var chip in [state.picMaster, state.picSlave, state.ioapic] {
            try fd.ioctl("KVM_SET_IRQCHIP", rund_KVM_SET_IRQCHIP(), &chip)
        }
    }
}
