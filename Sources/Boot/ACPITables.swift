import GuestMemory

/// Writes the guest's ACPI tables (RSDP, XSDT, FADT, MADT, DSDT) into [0xe0000, 1 MiB).
/// A stock Debian kernel (no MP table parsing, virtio-mmio as a module) finds its CPUs, IOAPIC
/// and virtio devices only here.
public enum ACPITables {
    /// Alignment of each table after the RSDP.
    static let tableAlignment: UInt64 = 16

    /// Writes the table set and returns the RSDP address for `boot_params.acpi_rsdp_addr`.
    @discardableResult
    public static func install(into memory: GuestMemory, vcpuCount: Int, devices: [ACPIDevice]) throws(BootError) -> UInt64 {
        guard (1...X86Layout.maxVCPUs).contains(vcpuCount) else {
            throw .invalidVCPUCount(vcpuCount, maximum: X86Layout.maxVCPUs)
        }
        guard devices.count <= X86Layout.maxVirtioMMIODevices else {
            throw .tooManyDevices(devices.count, maximum: X86Layout.maxVirtioMMIODevices)
        }
        for device in devices {
            guard case let .virtioMMIO(base, size, gsi) = device,
                  base >= X86Layout.mmioGapStart, base < X86Layout.mmioGapEnd, size > 0,
                  UInt64(size) <= X86Layout.mmioGapEnd - base,
                  gsi <= X86Layout.lastIOAPICGSI else {
                throw .invalidDevice("\(device) must lie in the 32-bit MMIO gap and use GSI 0-\(X86Layout.lastIOAPICGSI)")
            }
        }

        guard memory.contains(X86Layout.acpiStart, length: Int(X86Layout.acpiEnd - X86Layout.acpiStart)) else {
            throw .memoryTooSmall(neededBytes: X86Layout.acpiEnd, memoryBytes: UInt64(memory.totalSize))
        }
        let rsdpAddress = X86Layout.rsdpAddress
        let xsdtAddress = align(rsdpAddress + UInt64(RSDP.size))
        let madt = MADT.make(vcpuCount: vcpuCount)
        let dsdt = DSDT.make(devices: devices)
        let fadtAddress = align(xsdtAddress + UInt64(ACPITable.headerSize + 2 * 8))
        let madtAddress = align(fadtAddress + UInt64(FADT.size))
        let dsdtAddress = align(madtAddress + UInt64(madt.count))
        let end = dsdtAddress + UInt64(dsdt.count)
        guard end <= X86Layout.acpiEnd else {
            throw .acpiTablesTooLarge(size: Int(end - X86Layout.acpiStart), maximum: Int(X86Layout.acpiEnd - X86Layout.acpiStart))
        }
        let fadt = FADT.make(dsdtAddress: dsdtAddress)
        let xsdt = makeXSDT(entries: [fadtAddress, madtAddress])
        let rsdp = RSDP.make(xsdtAddress: xsdtAddress)

        do throws(GuestMemoryError) {
            try memory.zero(at: X86Layout.acpiStart, length: Int(end - X86Layout.acpiStart))
            try memory.write(rsdp, at: rsdpAddress)
            try memory.write(xsdt, at: xsdtAddress)
            try memory.write(fadt, at: fadtAddress)
            try memory.write(madt, at: madtAddress)
            try memory.write(dsdt, at: dsdtAddress)
        } catch {
            throw .guestMemory(error)
        }
        return rsdpAddress
    }

    static func align(_ address: UInt64) -> UInt64 {
        (address + tableAlignment - 1) & ~(tableAlignment - 1)
    }

    /// XSDT: 64-bit pointers to every table except the DSDT (which the FADT points to).
    static func makeXSDT(entries: [UInt64]) -> [UInt8] {
        var body: [UInt8] = []
        for entry in entries { body.appendLittleEndian(entry) }
        return ACPITable.make(signature: "XSDT", revision: 1, oemTableID: "RUNDXSDT", body: body)
    }
}

/// Root System Description Pointer, revision 2 (XSDT only).
enum RSDP {
    static let size = 36

    static func make(xsdtAddress: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendFixedASCII("RSD PTR ", width: 8)
        bytes.append(0) // checksum of the first 20 bytes
        bytes.appendFixedASCII(ACPITable.oemID, width: 6)
        bytes.append(2) // revision: ACPI 2.0+ layout
        bytes.appendLittleEndian(UInt32(0)) // no RSDT
        bytes.appendLittleEndian(UInt32(size))
        bytes.appendLittleEndian(xsdtAddress)
        bytes.append(0) // extended checksum of all 36 bytes
        bytes += [0, 0, 0]
        bytes[8] = checksumByte(bytes[0..<20])
        bytes[32] = checksumByte(bytes)
        return bytes
    }
}
