/// Multiple APIC Description Table: one enabled local APIC per vCPU (APIC id = index), the
/// in-kernel IOAPIC, and ISA IRQ 0 routed to GSI 2 as on PC hardware.
enum MADT {
    static let revision: UInt8 = 5

    enum EntryType {
        static let localAPIC: UInt8 = 0
        static let ioAPIC: UInt8 = 1
        static let interruptSourceOverride: UInt8 = 2
    }

    static let localAPICEnabled: UInt32 = 1
    /// PCAT_COMPAT stays clear: there is no 8259 pair for the guest to mask.
    static let flags: UInt32 = 0

    static func make(vcpuCount: Int) -> [UInt8] {
        var body: [UInt8] = []
        body.appendLittleEndian(UInt32(X86Layout.localAPICAddress.rawValue))
        body.appendLittleEndian(flags)
        for index in 0..<vcpuCount {
            body += [EntryType.localAPIC, 8, UInt8(index), UInt8(index)]
            body.appendLittleEndian(localAPICEnabled)
        }
        body += [EntryType.ioAPIC, 12, 0, 0]
        body.appendLittleEndian(UInt32(X86Layout.ioapicAddress.rawValue))
        body.appendLittleEndian(UInt32(0))  // GSI base
        // Bus 0 (ISA), source IRQ 0, GSI 2, flags 0 = conforms to the bus (edge, active high).
        body += [EntryType.interruptSourceOverride, 10, 0, 0]
        body.appendLittleEndian(UInt32(2))
        body.appendLittleEndian(UInt16(0))
        return ACPITable.make(signature: "APIC", revision: revision, oemTableID: "RUNDMADT", body: body)
    }
}
