import GuestMemory

/// Differentiated System Description Table: COM1, each virtio-mmio device (`LNRO0005`, which
/// `virtio_mmio.ko` binds to) and `\_S5_` so Linux can power off through the sleep registers.
enum DSDT {
    /// Revision 2: 64-bit AML integers.
    static let revision: UInt8 = 2

    static func make(devices: [ACPIDevice]) -> [UInt8] {
        var systemBus: [[UInt8]] = [com1()]
        for (index, device) in devices.enumerated() {
            switch device {
            case let .virtioMMIO(base, size, gsi):
                systemBus.append(virtioMMIO(index: index, base: base, size: size, gsi: gsi))
            }
        }
        let body =
            AML.scope("\\_SB_", systemBus)
            + AML.name(
                "\\_S5_",
                AML.package([
                    AML.integer(UInt64(X86Layout.s5SleepType)), AML.integer(0),
                    AML.integer(0), AML.integer(0),
                ]))
        return ACPITable.make(signature: "DSDT", revision: revision, oemTableID: "RUNDDSDT", body: body)
    }

    static func com1() -> [UInt8] {
        AML.device(
            "COM1",
            [
                AML.name("_HID", AML.eisaID("PNP0501")),
                AML.name("_UID", AML.integer(0)),
                AML.name(
                    "_CRS",
                    AML.resourceTemplate([
                        .io(
                            minimum: X86Layout.com1Port, maximum: X86Layout.com1Port, alignment: 1,
                            length: UInt8(X86Layout.com1PortCount)),
                        .interrupt(gsis: [X86Layout.com1GSI], edgeTriggered: true, activeLow: false, shared: false),
                    ])),
            ])
    }

    /// Device names are VR00, VR01, ... (two hex digits) so 256 fit in a 4-character segment.
    static func virtioMMIOName(index: Int) -> String {
        let hex = String(index, radix: 16, uppercase: true)
        return "VR" + String(repeating: "0", count: max(0, 2 - hex.count)) + hex
    }

    /// `base` lies in the 32-bit MMIO gap (`ACPITables.install` checked).
    static func virtioMMIO(index: Int, base: GuestAddress, size: UInt32, gsi: UInt32) -> [UInt8] {
        AML.device(
            virtioMMIOName(index: index),
            [
                AML.name("_HID", AML.string("LNRO0005")),
                AML.name("_UID", AML.integer(UInt64(index))),
                AML.name("_CCA", AML.integer(1)),  // cache-coherent DMA
                AML.name(
                    "_CRS",
                    AML.resourceTemplate([
                        .memory32Fixed(base: UInt32(truncatingIfNeeded: base.rawValue), length: size, writable: true),
                        .interrupt(gsis: [gsi], edgeTriggered: true, activeLow: false, shared: false),
                    ])),
            ])
    }
}
