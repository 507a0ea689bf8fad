#if canImport(Glibc)
import Glibc
#endif
import GuestMemory
import HostOS
import Testing
@testable import Boot

/// Host programs some tests drive; a test that needs a missing one is disabled with the reason.
enum HostTool {
    static func isInstalled(_ name: String) -> Bool {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        return path.split(separator: ":").contains { access("\($0)/\(name)", X_OK) == 0 }
    }
}

/// acpica-tools: `iasl` (AML compiler, table disassembler) and `acpiexec` (ACPICA interpreter).
enum Iasl {
    static let isInstalled = HostTool.isInstalled("iasl") && HostTool.isInstalled("acpiexec")
}

/// A private temporary directory, removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init() throws {
        var template = Array("/tmp/rund-boot-test.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError.last("mkdtemp", subject: "/tmp") }
        path = String(cString: made)
    }

    func write(_ name: String, _ bytes: [UInt8]) throws {
        let fd = try FileDescriptor.open("\(path)/\(name)", O_WRONLY | O_CREAT | O_TRUNC)
        try fd.writeAll(bytes)
    }

    func read(_ name: String) throws -> [UInt8] {
        try FileDescriptor.open("\(path)/\(name)", O_RDONLY).readToEnd()
    }

    func remove() {
        _ = try? Subprocess.run(["rm", "-rf", path])
    }
}

@Suite(.enabled(if: Iasl.isInstalled, "iasl/acpiexec are not installed (Debian package acpica-tools)"))
struct IaslTests {
    /// Every table rund installs decompiles cleanly, and the text shows what Linux must find.
    @Test func tablesDecompileWithoutErrors() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        let files = try Self.writeTables(to: scratch)
        var text: [String: String] = [:]
        for name in files.keys.sorted() {
            let result = try Subprocess.run(["iasl", "-d", "\(scratch.path)/\(name).dat"])
            let output = result.stdoutText + result.stderrText
            #expect(result.status == 0, "iasl -d \(name).dat: \(output)")
            #expect(!output.contains("Error") && !output.contains("Warning"), "iasl -d \(name).dat: \(output)")
            text[name] = String(decoding: try scratch.read("\(name).dsl"), as: UTF8.self)
        }

        // Recompiling iasl's text gives our bytes back (data tables), or at least compiles cleanly (DSDT:
        // iasl drops the root prefix of \_SB).
        for (name, bytes) in files.sorted(by: { $0.key < $1.key }) {
            let result = try Subprocess.run(["iasl", "-p", "\(scratch.path)/\(name)-again", "\(scratch.path)/\(name).dsl"])
            #expect(result.stdoutText.contains("0 Errors, 0 Warnings"), "iasl \(name).dsl: \(result.stdoutText)")
            guard name != "dsdt" else { continue }
            let again = try scratch.read("\(name)-again.aml")
            // Same bytes except the checksum and iasl's own compiler id and revision.
            let compared = Array(0..<9) + Array(10..<28) + Array(36..<bytes.count)
            #expect(again.count == bytes.count && compared.allSatisfy { again[$0] == bytes[$0] }, "\(name) round trip")
        }

        let dsdt = text["dsdt"] ?? ""
        #expect(dsdt.contains("Device (COM1)"))
        #expect(dsdt.contains("EisaId (\"PNP0501\")"))
        #expect(dsdt.contains("IO (Decode16,"))
        #expect(dsdt.contains("0x03F8"))
        #expect(dsdt.contains("Device (VR00)") && dsdt.contains("Device (VR01)"))
        #expect(dsdt.contains("\"LNRO0005\""))
        #expect(dsdt.contains("Memory32Fixed (ReadWrite,"))
        #expect(dsdt.contains("0xD0001000"))
        #expect(dsdt.contains("Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, )"))
        #expect(dsdt.contains("0x00000006,"))
        #expect(dsdt.contains("Name (_CCA, One)"))
        #expect(dsdt.contains("_S5_"))

        let madt = text["apic"] ?? ""
        #expect(madt.occurrences(of: "Subtable Type : 00 [Processor Local APIC]") == 3)
        #expect(madt.contains("Local Apic ID : 02"))
        #expect(madt.contains("Subtable Type : 01 [I/O APIC]"))
        #expect(madt.contains("Address : FEC00000"))
        #expect(madt.contains("Subtable Type : 02 [Interrupt Source Override]"))

        let fadt = text["facp"] ?? ""
        #expect(fadt.contains("Hardware Reduced (V5) : 1"))
        #expect(fadt.contains("Reset Register Supported (V2) : 1"))
        #expect(fadt.contains("Sleep Control Register : [Generic Address Structure]"))
        #expect(text["xsdt"]?.contains("ACPI Table Address   1 : ") == true)
    }

    /// ACPICA's interpreter (the code Linux runs) loads the tables and decodes every `_CRS`.
    @Test func tablesLoadInTheACPICAInterpreter() throws {
        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        _ = try Self.writeTables(to: scratch)
        let commands = #"resources \_SB.COM1; resources \_SB.VR00; resources \_SB.VR01; evaluate \_S5"#
        let result = try Subprocess.run(["acpiexec", "-b", commands] + ["dsdt", "facp", "apic"].map { "\(scratch.path)/\($0).dat" })
        let output = result.stdoutText + result.stderrText
        #expect(result.status == 0, "acpiexec: \(output)")
        // (The `resources` command also tries _SRS, which fixed devices lack: AE_NOT_FOUND is expected.)
        for bad in ["Error", "Warning", "mismatch", "AE_AML", "AE_BAD", "AE_NO_"] {
            #expect(!output.contains(bad), "acpiexec printed \(bad): \(output)")
        }
        #expect(output.contains("3 Devices"))
        #expect(output.contains("Address Minimum : 03F8"))
        #expect(output.contains("Dword00 : 00000004"))
        #expect(output.contains("Address : D0000000") && output.contains("Address : D0001000"))
        #expect(output.contains("Dword00 : 00000005") && output.contains("Dword00 : 00000006"))
        #expect(output.contains("Triggering : Edge"))
        #expect(output.contains("[Integer] = 0000000000000005"))
    }

    /// Installs the tables for 3 vCPUs and 2 virtio-mmio devices and writes each to `<sig>.dat`
    /// (iasl cannot read a bare RSDP; ACPITablesTests checks it byte by byte).
    static func writeTables(to scratch: ScratchDirectory) throws -> [String: [UInt8]] {
        let memory = try GuestMemory.anonymous(X86Layout.ramRegions(memoryBytes: 16 << 20))
        let rsdpAddress = try ACPITables.install(into: memory, vcpuCount: 3, devices: ACPIDevice.virtioMMIOSlots(count: 2))
        let installed = try InstalledTables(memory: memory, rsdpAddress: rsdpAddress)
        var files: [String: [UInt8]] = [:]
        for (signature, table) in installed.tables {
            files[signature.lowercased()] = table.bytes
            try scratch.write("\(signature.lowercased()).dat", table.bytes)
        }
        return files
    }

    /// Our encoder produces the same AML as iasl for the same source.
    @Test func encoderMatchesIaslOutput() throws {
        let source = """
            DefinitionBlock ("", "DSDT", 2, "RUND  ", "RUNDDSDT", 1)
            {
                Scope (\\_SB)
                {
                    Device (COM1)
                    {
                        Name (_HID, EisaId ("PNP0501"))
                        Name (_UID, Zero)
                        Name (_CRS, ResourceTemplate ()
                        {
                            IO (Decode16, 0x03F8, 0x03F8, 0x01, 0x08, )
                            Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,, ) {4}
                        })
                    }
                    Device (VR0A)
                    {
                        Name (_HID, "LNRO0005")
                        Name (_UID, 0x0A)
                        Name (_CCA, One)
                        Name (_CRS, ResourceTemplate ()
                        {
                            Memory32Fixed (ReadWrite, 0xD000A000, 0x00001000, )
                            Interrupt (ResourceConsumer, Level, ActiveLow, Shared, ,, ) {15, 16}
                        })
                    }
                    Method (MTH0, 0, NotSerialized)
                    {
                        Return (0x0F)
                    }
                    Method (MTH1, 3, Serialized)
                    {
                        Return ("text")
                    }
                }
                Name (\\_S5, Package (0x04) { 0x05, Zero, Zero, Zero })
                Name (INTS, Package () { 0xFE, 0x1234, 0x12345678, 0x123456789A })
                Name (BUF0, Buffer () { 0x01, 0x02, 0x03 })
                Name (\\_SB.COM1.PATH, 0x02)
            }
            """
        // iasl drops a leading `\` at root scope (name optimization), so the probe uses relative paths.
        let ours =
            AML.scope(
                "_SB",
                [
                    AML.device(
                        "COM1",
                        [
                            AML.name("_HID", AML.eisaID("PNP0501")),
                            AML.name("_UID", AML.integer(0)),
                            AML.name(
                                "_CRS",
                                AML.resourceTemplate([
                                    .io(minimum: 0x3f8, maximum: 0x3f8, alignment: 1, length: 8),
                                    .interrupt(gsis: [4], edgeTriggered: true, activeLow: false, shared: false),
                                ])),
                        ]),
                    AML.device(
                        "VR0A",
                        [
                            AML.name("_HID", AML.string("LNRO0005")),
                            AML.name("_UID", AML.integer(10)),
                            AML.name("_CCA", AML.integer(1)),
                            AML.name(
                                "_CRS",
                                AML.resourceTemplate([
                                    .memory32Fixed(base: 0xd000_a000, length: 0x1000),
                                    .interrupt(gsis: [15, 16], edgeTriggered: false, activeLow: true, shared: true),
                                ])),
                        ]),
                    AML.method("MTH0", [AML.return(AML.integer(0x0f))]),
                    AML.method("MTH1", argumentCount: 3, serialized: true, [AML.return(AML.string("text"))]),
                ])
            + AML.name("_S5", AML.package([AML.integer(5), AML.integer(0), AML.integer(0), AML.integer(0)]))
            + AML.name("INTS", AML.package([0xfe, 0x1234, 0x1234_5678, 0x12_3456_789a].map(AML.integer)))
            + AML.name("BUF0", AML.buffer([1, 2, 3]))
            + AML.name("_SB.COM1.PATH", AML.integer(2))

        let scratch = try ScratchDirectory()
        defer { scratch.remove() }
        try scratch.write("probe.asl", Array(source.utf8))
        let result = try Subprocess.run(["iasl", "-p", "\(scratch.path)/probe", "\(scratch.path)/probe.asl"])
        #expect(result.status == 0, "iasl: \(result.stdoutText)\(result.stderrText)")
        let compiled = Array(try scratch.read("probe.aml").dropFirst(ACPITable.headerSize))
        #expect(compiled == ours, "iasl: \(Self.hex(compiled))\nours: \(Self.hex(ours))")
    }
}

extension IaslTests {
    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16) }.joined(separator: " ")
    }
}

extension String {
    func occurrences(of needle: String) -> Int {
        var count = 0
        var rest = self[...]
        while let range = rest.firstRange(of: needle) {
            count += 1
            rest = rest[range.upperBound...]
        }
        return count
    }
}
