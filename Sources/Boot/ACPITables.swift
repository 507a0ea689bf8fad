import GuestMemory

/// Writes the guest's ACPI tables (RSDP, XSDT, FADT, MADT, DSDT) into [0xe0000, 1 MiB).
/// A stock Debian kernel (no MP table parsing, virtio-mmio as a module) finds its CPUs, IOAPIC
/// and virtio devices only here.
public enum ACPITables {
    /// Alignment of each table after the RSDP.
    static let tableAlignment: UInt64 = 16
    /// Bytes reserved for the tables, [acpiStart, acpiEnd).
    static let areaSize = Int(X86Layout.acpiEnd.rawValue - X86Layout.acpiStart.rawValue)

    /// Writes the table set and returns the RSDP address for `boot_params.acpi_rsdp_addr`.
    @discardableResult
    public static func install(into memory: GuestMemory, vcpuCount: Int, devices: [ACPIDevice]) throws(BootError) -> GuestAddress {
        guard (1...X86Layout.maxVCPUs).contains(vcpuCount) else {
            throw .invalidVCPUCount(vcpuCount, maximum: X86Layout.maxVCPUs)
        }
        guard devices.count <= X86Layout.maxVirtioMMIODevices else {
            throw .tooManyDevices(devices.count, maximum: X86Layout.maxVirtioMMIODevices)
        }
        for device in devices {
            guard case let .virtioMMIO(base, size, gsi) = device,
                base >= X86Layout.mmioGapStart, let room = X86Layout.mmioGapEnd.offset(from: base), room > 0, size > 0,
                UInt64(size) <= room,
                gsi <= X86Layout.lastIOAPICGSI
            else {
                throw .invalidDevice("\(device) must lie in the 32-bit MMIO gap and use GSI 0-\(X86Layout.lastIOAPICGSI)")
            }
        }

        guard memory.contains(X86Layout.acpiStart, length: areaSize) else {
            throw .memoryTooSmall(neededBytes: X86Layout.acpiEnd.rawValue, memoryBytes: UInt64(memory.totalSize))
        }
        // Offsets from the RSDP, which sits at the start of the area: table sizes are small, so
        // these sums stay far below the area's end, checked once below.
        let madt = MADT.make(vcpuCount: vcpuCount)
        let dsdt = DSDT.make(devices: devices)
        let xsdtOffset = align(UInt64(RSDP.size))
        let fadtOffset = align(xsdtOffset + UInt64(ACPITable.headerSize + 2 * 8))
        let madtOffset = align(fadtOffset + UInt64(FADT.size))
        let dsdtOffset = align(madtOffset + UInt64(madt.count))
        let size = dsdtOffset + UInt64(dsdt.count)
        guard size <= UInt64(areaSize) else {
            throw .acpiTablesTooLarge(size: Int(size), maximum: areaSize)
        }
        let rsdpAddress = X86Layout.rsdpAddress
        let xsdtAddress = GuestAddress(rsdpAddress.rawValue + xsdtOffset)
        let fadtAddress = GuestAddress(rsdpAddress.rawValue + fadtOffset)
        let madtAddress = GuestAddress(rsdpAddress.rawValue + madtOffset)
        let dsdtAddress = GuestAddress(rsdpAddress.rawValue + dsdtOffset)
        let fadt = FADT.make(dsdtAddress: dsdtAddress)
        let xsdt = makeXSDT(entries: [fadtAddress, madtAddress])
        let rsdp = RSDP.make(xsdtAddress: xsdtAddress)

        do throws(GuestMemoryError) {
            try memory.zero(at: X86Layout.acpiStart, length: Int(size))
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

    /// Rounds an offset inside the ACPI area up to the table alignment.
    static func align(_ offset: UInt64) -> UInt64 {
        (offset + tableAlignment - 1) & ~(tableAlignment - 1)
    }

    /// XSDT: 64-bit pointers to every table except the DSDT (which the FADT points to).
    static func makeXSDT(entries: [GuestAddress]) -> [UInt8] {
        var body: [UInt8] = []
        for entry in entries { body.appendLittleEndian(entry.rawValue) }
        return ACPITable.make(signature: "XSDT", revision: 1, oemTableID: "RUNDXSDT", body: body)
    }
}

/// Root System Description Pointer, revision 2 (XSDT only).
enum RSDP {
    static let size = 36

    static func make(xsdtAddress: GuestAddress) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendFixedASCII("RSD PTR ", width: 8)
        bytes.append(0)  // checksum of the first 20 bytes
        bytes.appendFixedASCII(ACPITable.oemID, width: 6)
        bytes.append(2)  // revision: ACPI 2.0+ layout
        bytes.appendLittleEndian(UInt32(0))  // no RSDT
        bytes.appendLittleEndian(UInt32(size))
        bytes.appendLittleEndian(xsdtAddress.rawValue)
        bytes.append(0)  // extended checksum of all 36 bytes
        bytes += [0, 0, 0]
        bytes[8] = checksumByte(bytes[0..<20])
        bytes[32] = checksumByte(bytes)
        return bytes
    }
}
