import GuestMemory

/// Fixed ACPI Description Table, revision 6 (276 bytes), for hardware-reduced ACPI: no PM1/GPE
/// blocks, no FACS, no SCI; power off and reset go through the sleep control and reset registers.
enum FADT {
    static let size = 276
    static let revision: UInt8 = 6
    static let minorRevision: UInt8 = 3

    /// Body offsets (from the start of the table).
    enum Offset {
        static let iapcBootArch = 109
        static let flags = 112
        static let resetRegister = 116
        static let resetValue = 128
        static let minorRevision = 131
        static let xDSDT = 140
        static let sleepControl = 244
        static let sleepStatus = 256
        static let hypervisorVendor = 268
    }

    /// IA-PC boot architecture flags: no VGA, no MSI, no ASPM control, no CMOS RTC. Neither
    /// LEGACY_DEVICES nor 8042 is set, so Linux skips probing for ISA devices and a PS/2
    /// controller; `reboot=k` still pulses the reset line through port 0x64.
    static let iapcFlags: UInt16 = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5)

    /// PWR_BUTTON and SLP_BUTTON (there are none), RESET_REG_SUP, HW_REDUCED_ACPI.
    static let flags: UInt32 = (1 << 4) | (1 << 5) | (1 << 10) | (1 << 20)

    static func make(dsdtAddress: GuestAddress) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: size - ACPITable.headerSize)
        func put<T: FixedWidthInteger>(_ value: T, _ offset: Int) {
            body.putLittleEndian(value, at: offset - ACPITable.headerSize)
        }
        func put(bytes: [UInt8], _ offset: Int) {
            let at = offset - ACPITable.headerSize
            body.replaceSubrange(at..<(at + bytes.count), with: bytes)
        }
        put(iapcFlags, Offset.iapcBootArch)
        put(flags, Offset.flags)
        put(bytes: ACPITable.ioPortRegister(X86Layout.acpiResetPort), Offset.resetRegister)
        put(X86Layout.acpiResetValue, Offset.resetValue)
        put(minorRevision, Offset.minorRevision)
        put(dsdtAddress.rawValue, Offset.xDSDT)
        put(bytes: ACPITable.ioPortRegister(X86Layout.acpiSleepControlPort), Offset.sleepControl)
        put(bytes: ACPITable.ioPortRegister(X86Layout.acpiSleepStatusPort), Offset.sleepStatus)
        put(bytes: Array("RUNDKVM ".utf8), Offset.hypervisorVendor)
        return ACPITable.make(signature: "FACP", revision: revision, oemTableID: "RUNDFACP", body: body)
    }
}
