import GuestMemory
import Testing
@testable import Boot

/// Reads the table set back from guest memory the way a guest does: RSDP -> XSDT -> FADT -> DSDT.
struct InstalledTables {
    var rsdp: [UInt8]
    var tables: [String: (address: GuestAddress, bytes: [UInt8])] = [:]

    init(memory: GuestMemory, rsdpAddress: GuestAddress) throws {
        rsdp = try memory.readBytes(at: rsdpAddress, count: 36)
        let xsdtAddress = GuestAddress(rsdp.littleEndian(UInt64.self, at: 24))
        let xsdt = try Self.table(memory, at: xsdtAddress)
        tables["XSDT"] = (xsdtAddress, xsdt)
        for i in stride(from: 36, to: xsdt.count, by: 8) {
            let address = GuestAddress(xsdt.littleEndian(UInt64.self, at: i))
            let table = try Self.table(memory, at: address)
            tables[String(decoding: table.prefix(4), as: UTF8.self)] = (address, table)
        }
        if let fadt = tables["FACP"]?.bytes {
            let dsdtAddress = GuestAddress(fadt.littleEndian(UInt64.self, at: 140))
            tables["DSDT"] = (dsdtAddress, try Self.table(memory, at: dsdtAddress))
        }
    }

    static func table(_ memory: GuestMemory, at address: GuestAddress) throws -> [UInt8] {
        let length = try memory.load(UInt32.self, at: address + 4)
        return try memory.readBytes(at: address, count: Int(length))
    }

    func bytes(_ signature: String) -> [UInt8] { tables[signature]?.bytes ?? [] }
}

@Suite struct ACPITablesTests {
    static func install(
        vcpus: Int = 2, devices: [ACPIDevice] = ACPIDevice.virtioMMIOSlots(count: 2)
    ) throws
        -> (GuestMemory, InstalledTables)
    {
        let memory = try GuestMemory.anonymous(X86Layout.ramRegions(memoryBytes: 16 << 20))
        let rsdp = try ACPITables.install(into: memory, vcpuCount: vcpus, devices: devices)
        #expect(rsdp == 0xe0000)
        return (memory, try InstalledTables(memory: memory, rsdpAddress: rsdp))
    }

    @Test func everyChecksumIsRight() throws {
        let (_, installed) = try Self.install()
        #expect(Array(installed.rsdp.prefix(8)) == Array("RSD PTR ".utf8))
        #expect(installed.rsdp[15] == 2)  // revision
        #expect(installed.rsdp.littleEndian(UInt32.self, at: 16) == 0)  // no RSDT
        #expect(installed.rsdp.littleEndian(UInt32.self, at: 20) == 36)
        #expect(installed.rsdp.prefix(20).reduce(UInt8(0), &+) == 0)
        #expect(installed.rsdp.reduce(UInt8(0), &+) == 0)
        #expect(Set(installed.tables.keys) == ["XSDT", "FACP", "APIC", "DSDT"])
        for (signature, table) in installed.tables {
            #expect(table.bytes.reduce(UInt8(0), &+) == 0, "\(signature) checksum")
            #expect(table.address >= X86Layout.acpiStart && table.address + UInt64(table.bytes.count) <= X86Layout.acpiEnd)
            #expect(table.address.isAligned(to: 16))
            #expect(Array(table.bytes[10..<16]) == Array("RUND  ".utf8))
        }
    }

    @Test func fadtIsHardwareReducedWithSleepAndResetRegisters() throws {
        let (_, installed) = try Self.install()
        let fadt = installed.bytes("FACP")
        #expect(fadt.count == 276)
        #expect(fadt[8] == 6)  // revision
        #expect(fadt[131] == 3)  // minor revision
        let flags = fadt.littleEndian(UInt32.self, at: 112)
        #expect(flags & (1 << 20) != 0)  // HW_REDUCED_ACPI
        #expect(flags & (1 << 10) != 0)  // RESET_REG_SUP
        #expect(fadt.littleEndian(UInt32.self, at: 40) == 0)  // 32-bit DSDT unused
        #expect(fadt.littleEndian(UInt64.self, at: 140) == installed.tables["DSDT"]?.address.rawValue)
        // GAS: SystemIO, 8 bits, offset 0, byte access, port.
        #expect(Array(fadt[116..<128]) == [1, 8, 0, 1, 0x02, 0x06, 0, 0, 0, 0, 0, 0])
        #expect(fadt[128] == 1)
        #expect(Array(fadt[244..<256]) == [1, 8, 0, 1, 0x00, 0x06, 0, 0, 0, 0, 0, 0])
        #expect(Array(fadt[256..<268]) == [1, 8, 0, 1, 0x01, 0x06, 0, 0, 0, 0, 0, 0])
        // No legacy PM blocks.
        #expect(fadt[56..<88].allSatisfy { $0 == 0 })
        #expect(fadt[148..<244].allSatisfy { $0 == 0 })
    }

    @Test func madtHasOneLocalAPICPerVCPUAndTheIOAPIC() throws {
        let (_, installed) = try Self.install(vcpus: 4)
        let madt = installed.bytes("APIC")
        #expect(madt.littleEndian(UInt32.self, at: 36) == 0xfee0_0000)
        #expect(madt.littleEndian(UInt32.self, at: 40) == 0)  // PCAT_COMPAT off
        var entries: [[UInt8]] = []
        var offset = 44
        while offset < madt.count {
            let length = Int(madt[offset + 1])
            #expect(length > 0)
            entries.append(Array(madt[offset..<(offset + length)]))
            offset += length
        }
        #expect(offset == madt.count)
        #expect(entries.count == 4 + 2)
        for cpu in 0..<4 {
            #expect(entries[cpu] == [0, 8, UInt8(cpu), UInt8(cpu), 1, 0, 0, 0])
        }
        #expect(entries[4] == [1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0])
        #expect(entries[5] == [2, 10, 0, 0, 2, 0, 0, 0, 0, 0])
    }

    @Test func dsdtDeclaresCOM1VirtioDevicesAndS5() throws {
        let (_, installed) = try Self.install(devices: ACPIDevice.virtioMMIOSlots(count: 3))
        let dsdt = installed.bytes("DSDT")
        #expect(dsdt[8] == 2)
        let body = Array(dsdt.dropFirst(36))
        #expect(body.firstRange(of: DSDT.com1()) != nil)
        for slot in 0..<3 {
            let device = DSDT.virtioMMIO(
                index: slot, base: GuestAddress(0xd000_0000 + UInt64(slot) * 0x1000), size: 0x1000,
                gsi: 5 + UInt32(slot))
            #expect(body.firstRange(of: device) != nil)
            #expect(body.firstRange(of: Array("VR0\(slot)".utf8)) != nil)
        }
        #expect(body.firstRange(of: AML.name("\\_S5_", AML.package([[0x0a, 5], [0], [0], [0]]))) != nil)
        #expect(DSDT.virtioMMIOName(index: 10) == "VR0A")
        #expect(DSDT.virtioMMIOName(index: 255) == "VRFF")
    }

    @Test func rejectsBadVCPUCountsAndDevices() throws {
        let memory = try GuestMemory.anonymous(X86Layout.ramRegions(memoryBytes: 16 << 20))
        #expect(throws: BootError.invalidVCPUCount(0, maximum: 254)) {
            try ACPITables.install(into: memory, vcpuCount: 0, devices: [])
        }
        #expect(throws: BootError.invalidVCPUCount(255, maximum: 254)) {
            try ACPITables.install(into: memory, vcpuCount: 255, devices: [])
        }
        #expect(throws: BootError.tooManyDevices(20, maximum: 19)) {
            try ACPITables.install(into: memory, vcpuCount: 1, devices: ACPIDevice.virtioMMIOSlots(count: 20))
        }
        #expect(throws: BootError.self) {
            try ACPITables.install(into: memory, vcpuCount: 1, devices: [.virtioMMIO(base: 0x1000, size: 0x1000, gsi: 5)])
        }
        #expect(throws: BootError.self) {
            try ACPITables.install(into: memory, vcpuCount: 1, devices: [.virtioMMIO(base: 0xd000_0000, size: 0x1000, gsi: 24)])
        }
        for device in [
            ACPIDevice.virtioMMIO(base: GuestAddress(.max - 10), size: 0x1000, gsi: 5),
            .virtioMMIO(base: 0xffff_f000, size: 0x2000, gsi: 5),
            .virtioMMIO(base: 0xd000_0000, size: 0, gsi: 5),
        ] {
            #expect(throws: BootError.self) { try ACPITables.install(into: memory, vcpuCount: 1, devices: [device]) }
        }
        let small = try GuestMemory.anonymous([(base: 0, size: 0x80000)])
        #expect(throws: BootError.memoryTooSmall(neededBytes: 0x100000, memoryBytes: 0x80000)) {
            try ACPITables.install(into: small, vcpuCount: 1, devices: [])
        }
        // The largest configuration fits in the reserved area.
        #expect(throws: Never.self) {
            try ACPITables.install(into: memory, vcpuCount: 254, devices: ACPIDevice.virtioMMIOSlots(count: 19))
        }
    }

    @Test func powerOffRequestDecoding() {
        #expect(X86Layout.isPowerOffRequest(0x34))  // SLP_TYP 5, SLP_EN
        #expect(!X86Layout.isPowerOffRequest(0x14))  // no SLP_EN
        #expect(!X86Layout.isPowerOffRequest(0x80))  // WAK_STS
        #expect(!X86Layout.isPowerOffRequest(0x2c))  // SLP_TYP 3
    }
}
