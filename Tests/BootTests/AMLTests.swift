import Testing
@testable import Boot

/// Expected bytes derived by hand from ACPI 6.5 chapter 20 (AML grammar) and 6.4 (resources).
@Suite struct AMLTests {
    @Test func packageLengthUsesOneToFourBytes() {
        // One byte: the value (content + 1) itself, up to 63.
        #expect(AML.packageLength(contentLength: 0) == [0x01])
        #expect(AML.packageLength(contentLength: 62) == [0x3f])
        // Two bytes: lead byte 0b01 << 6 | low nibble, then bits 4-11. 63 + 2 = 65 = 0x41.
        #expect(AML.packageLength(contentLength: 63) == [0x41, 0x04])
        #expect(AML.packageLength(contentLength: 0xffd) == [0x4f, 0xff])  // 0xfff
        // Three bytes: 0xffe + 3 = 0x1001.
        #expect(AML.packageLength(contentLength: 0xffe) == [0x81, 0x00, 0x01])
        #expect(AML.packageLength(contentLength: 0xffffc) == [0x8f, 0xff, 0xff])  // 0xfffff
        // Four bytes: 0xffffd + 4 = 0x100001.
        #expect(AML.packageLength(contentLength: 0xffffd) == [0xc1, 0x00, 0x00, 0x01])
        #expect(AML.packageLength(contentLength: 0xffffffb) == [0xcf, 0xff, 0xff, 0xff])
    }

    @Test func integersUseTheShortestEncoding() {
        #expect(AML.integer(0) == [0x00])
        #expect(AML.integer(1) == [0x01])
        #expect(AML.integer(2) == [0x0a, 0x02])
        #expect(AML.integer(0xff) == [0x0a, 0xff])
        #expect(AML.integer(0x100) == [0x0b, 0x00, 0x01])
        #expect(AML.integer(0xffff) == [0x0b, 0xff, 0xff])
        #expect(AML.integer(0x1_0000) == [0x0c, 0x00, 0x00, 0x01, 0x00])
        #expect(AML.integer(0xd000_0000) == [0x0c, 0x00, 0x00, 0x00, 0xd0])
        #expect(AML.integer(0x1_0000_0000) == [0x0e, 0, 0, 0, 0, 1, 0, 0, 0])
        #expect(AML.integer(.max) == [0x0e] + [UInt8](repeating: 0xff, count: 8))
    }

    @Test func namesStringsAndEisaIDs() {
        #expect(AML.nameString("_HID") == Array("_HID".utf8))
        #expect(AML.nameString("_SB") == Array("_SB_".utf8))
        #expect(AML.nameString("\\_S5") == [0x5c] + Array("_S5_".utf8))
        #expect(AML.nameString("\\_SB.COM1") == [0x5c, 0x2e] + Array("_SB_COM1".utf8))
        #expect(AML.nameString("^^VR00") == [0x5e, 0x5e] + Array("VR00".utf8))
        #expect(AML.nameString("\\_SB.PCI0.ISA") == [0x5c, 0x2f, 0x03] + Array("_SB_PCI0ISA_".utf8))
        #expect(AML.nameString("\\") == [0x5c, 0x00])
        #expect(AML.string("LNRO0005") == [0x0d] + Array("LNRO0005".utf8) + [0x00])
        #expect(AML.string("") == [0x0d, 0x00])
        // "PNP0501": P=0x10 N=0x0e P=0x10 -> 0x41 0xd0, digits 05 01 -> DWord 0x0105d041.
        #expect(AML.eisaID("PNP0501") == [0x0c, 0x41, 0xd0, 0x05, 0x01])
        #expect(AML.eisaID("PNP0A03") == [0x0c, 0x41, 0xd0, 0x0a, 0x03])
    }

    @Test func namedObjectsAndContainers() {
        // Name(_UID, Zero)
        #expect(AML.name("_UID", AML.integer(0)) == [0x08, 0x5f, 0x55, 0x49, 0x44, 0x00])
        // Package() {5, 0}: PackageOp, PkgLength 4, NumElements 2, 0x0a 0x05, ZeroOp.
        #expect(AML.package([AML.integer(5), AML.integer(0)]) == [0x12, 0x05, 0x02, 0x0a, 0x05, 0x00])
        // Buffer() {1, 2, 3}: BufferOp, PkgLength 6, size 0x0a 0x03, bytes.
        #expect(AML.buffer([1, 2, 3]) == [0x11, 0x06, 0x0a, 0x03, 0x01, 0x02, 0x03])
        #expect(AML.buffer([]) == [0x11, 0x02, 0x00])
        // Scope(\_SB) {}: ScopeOp, PkgLength 6, name.
        #expect(AML.scope("\\_SB", []) == [0x10, 0x06, 0x5c] + Array("_SB_".utf8))
        // Device(COM1) { Name(_UID, One) }: ExtOpPrefix DeviceOp, PkgLength 1+4+6.
        #expect(
            AML.device("COM1", [AML.name("_UID", AML.integer(1))])
                == [0x5b, 0x82, 0x0b] + Array("COM1".utf8) + [0x08] + Array("_UID".utf8) + [0x01])
        // Method(_STA, 0, NotSerialized) { Return(0x0F) }
        #expect(
            AML.method("_STA", [AML.return(AML.integer(0x0f))])
                == [0x14, 0x09] + Array("_STA".utf8) + [0x00, 0xa4, 0x0a, 0x0f])
        #expect(AML.method("FOO", argumentCount: 2, serialized: true, [])[6] == 0x0a)
        // A device big enough for a two-byte PkgLength.
        let big = AML.device("BIG0", [AML.name("DATA", AML.buffer([UInt8](repeating: 7, count: 100)))])
        let content = 4 + 5 + 3 + 2 + 100  // name, Name op+seg, BufferOp+PkgLength+size, 100 bytes
        #expect(Array(big.prefix(4)) == [0x5b, 0x82, UInt8(0x40 | ((content + 2) & 0xf)), UInt8((content + 2) >> 4)])
        #expect(big.count == 2 + 2 + content)
    }

    @Test func resourceDescriptors() {
        #expect(
            AML.Resource.io(minimum: 0x3f8, maximum: 0x3f8, alignment: 1, length: 8).encoded
                == [0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08])
        #expect(
            AML.Resource.memory32Fixed(base: 0xd000_0000, length: 0x1000).encoded
                == [0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00])
        #expect(AML.Resource.memory32Fixed(base: 0x1000, length: 0x10, writable: false).encoded[3] == 0x00)
        // Interrupt(ResourceConsumer, Edge, ActiveHigh, Exclusive) {5}
        #expect(
            AML.Resource.interrupt(gsis: [5], edgeTriggered: true, activeLow: false, shared: false).encoded
                == [0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00])
        // Interrupt(ResourceConsumer, Level, ActiveLow, Shared) {9, 10}
        #expect(
            AML.Resource.interrupt(gsis: [9, 10], edgeTriggered: false, activeLow: true, shared: true).encoded
                == [0x89, 0x0a, 0x00, 0x0d, 0x02, 0x09, 0, 0, 0, 0x0a, 0, 0, 0])
    }

    @Test func resourceTemplateEndsWithAnEndTag() {
        let template = AML.resourceTemplate([.io(minimum: 0x3f8, maximum: 0x3f8, alignment: 1, length: 8)])
        // BufferOp, PkgLength, size 10, 8 descriptor bytes, EndTag 0x79, checksum.
        #expect(Array(template.prefix(4)) == [0x11, 0x0d, 0x0a, 0x0a])
        let data = template.dropFirst(4)
        #expect(data.count == 10)
        #expect(Array(data.suffix(2)) == [0x79, 0x00])  // checksum 0: "treat as valid"
    }
}
