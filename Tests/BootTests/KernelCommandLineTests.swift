import Testing
@testable import Boot

@Suite struct KernelCommandLineTests {
    @Test func buildsTheDefaultLinePlusExtras() throws {
        let base =
            "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd "
            + "8250.nr_uarts=1 cryptomgr.notests init_on_alloc=0 pci=off"
        #expect(try KernelCommandLine.build() == base)
        #expect(try KernelCommandLine.build(extra: "") == base)
        #expect(try KernelCommandLine.build(extra: "root=/dev/vda rw") == base + " root=/dev/vda rw")
    }

    @Test func rejectsOverlongLinesAndNUL() {
        let longest = String(repeating: "x", count: 2047)
        #expect(throws: Never.self) { try KernelCommandLine.validate(longest) }
        #expect(throws: BootError.commandLineTooLong(length: 2048, maximum: 2047)) {
            try KernelCommandLine.validate(longest + "x")
        }
        #expect(throws: BootError.self) { try KernelCommandLine.build(extra: longest) }
        #expect(throws: BootError.commandLineContainsNUL) { try KernelCommandLine.build(extra: "init=/x\0") }
        // Multi-byte characters count as their UTF-8 bytes.
        #expect(throws: BootError.self) { try KernelCommandLine.validate(String(repeating: "é", count: 1024)) }
    }
}
