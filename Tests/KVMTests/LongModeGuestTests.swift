import CLinux
import GuestMemory
import Testing
@testable import KVM

/// A freestanding 64-bit guest run on the host's KVM: it writes a string to I/O port 0xE9 one byte
/// at a time and halts. Exercises VM creation, memory slots, long-mode sregs, the run loop and
/// port-I/O exits. The same test runs inside the nested rig (IntegrationTests/KVMInRigTests).
@Suite struct LongModeGuestTests {
    static let message = "rund: hello from long mode\n"

    @Test(.enabled(if: HostKVM.isUsable, HostKVM.reason))
    func guestWritesToAPortAndHalts() throws {
        let guest = try LongModeTestGuest(message: Self.message)
        let trace = try guest.run(maxExits: 1000)
        #expect(String(decoding: trace.output, as: UTF8.self) == Self.message)
        #expect(trace.ioExits == Self.message.utf8.count)
        #expect(trace.ports == [0xE9])
        #expect(trace.endedWithHalt)
        #expect(trace.otherExits == 0)
    }
}

/// Builds and runs the test guest; the trace records every exit the guest caused.
struct LongModeTestGuest {
    struct Trace {
        var output: [UInt8] = []
        var ioExits = 0
        var ports: Set<UInt16> = []
        var endedWithHalt = false
        var otherExits = 0
    }

    static let codeAddress: UInt64 = 0x1000
    static let gdtAddress: UInt64 = 0x500
    static let pml4Address: UInt64 = 0x9000

    let vm: VirtualMachine
    let vcpu: VCPU
    let memory: GuestMemory

    init(message: String) throws {
        let kvm = try KVMSystem()
        vm = try kvm.createVirtualMachine()
        memory = try GuestMemory.anonymous([(base: 0, size: 2 << 20)])
        let mapping = memory.hypervisorMappings[0]
        try vm.setUserMemoryRegion(slot: 0, guestAddress: 0, size: mapping.size, host: mapping.host)

        // mov dx,0xe9 ; lea rsi,[rip+9] ; 1: lodsb ; test al,al ; jz 2f ; out dx,al ; jmp 1b ; 2: hlt ; msg
        let code: [UInt8] = [
            0x66, 0xBA, 0xE9, 0x00, 0x48, 0x8D, 0x35, 0x09, 0x00, 0x00, 0x00,
            0xAC, 0x84, 0xC0, 0x74, 0x03, 0xEE, 0xEB, 0xF8, 0xF4,
        ]
        try memory.write(code + Array(message.utf8) + [0], at: GuestAddress(Self.codeAddress))

        // Flat GDT: null, 64-bit code, data.
        try memory.store(UInt64(0), at: GuestAddress(Self.gdtAddress))
        try memory.store(UInt64(0x00AF_9B00_0000_FFFF), at: GuestAddress(Self.gdtAddress + 8))
        try memory.store(UInt64(0x00CF_9300_0000_FFFF), at: GuestAddress(Self.gdtAddress + 16))

        // Identity map of the first 1 GiB with 2 MiB pages.
        let pdpt = Self.pml4Address + 0x1000, pd = Self.pml4Address + 0x2000
        try memory.store(pdpt | 0x3, at: GuestAddress(Self.pml4Address))
        try memory.store(pd | 0x3, at: GuestAddress(pdpt))
        for i in 0..<512 { try memory.store(UInt64(i) << 21 | 0x83, at: GuestAddress(pd + UInt64(i * 8))) }

        vcpu = try vm.createVCPU(id: 0)
        var sregs = try vcpu.specialRegisters()
        let code64 = kvm_segment(
            base: 0, limit: 0xFFFF_FFFF, selector: 8, type: 11, present: 1, dpl: 0,
            db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0, padding: 0)
        let data = kvm_segment(
            base: 0, limit: 0xFFFF_FFFF, selector: 16, type: 3, present: 1, dpl: 0,
            db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0, padding: 0)
        sregs.cs = code64
        sregs.ds = data; sregs.es = data; sregs.fs = data; sregs.gs = data; sregs.ss = data
        sregs.gdt.base = Self.gdtAddress
        sregs.gdt.limit = 23
        sregs.cr3 = Self.pml4Address
        sregs.cr4 = 0x20  // PAE
        sregs.cr0 = 0x8000_0011  // PG | ET | PE
        sregs.efer = 0x500  // LMA | LME
        try vcpu.setSpecialRegisters(sregs)

        var regs = kvm_regs()
        regs.rip = Self.codeAddress
        regs.rflags = 2
        regs.rsp = 0x8000
        try vcpu.setRegisters(regs)
    }

    func run(maxExits: Int) throws -> Trace {
        var trace = Trace()
        for _ in 0..<maxExits {
            switch try vcpu.run() {
            case let .io(port, isWrite, size, count, data) where isWrite:
                trace.ioExits += 1
                trace.ports.insert(port)
                trace.output.append(contentsOf: data.prefix(size * count))
            case .halt:
                trace.endedWithHalt = true
                return trace
            case .interrupted:
                continue
            default:
                trace.otherExits += 1
                return trace
            }
        }
        return trace
    }
}
