import Testing
@testable import VMM

/// The panic line the console sink keeps is guest text on its way to the operator's terminal
/// (`rund: the guest kernel panicked: ...`): escaped, bounded, without the timestamp or CR.
struct ConsoleSinkTests {
    @Test func aPlainPanicLineIsKeptWithoutTimestampOrCR() {
        let sink = ConsoleSink(output: nil)
        sink.write(Array("[    0.5] booting\r\n[    1.234567] Kernel panic - not syncing: sysrq triggered crash\r\n".utf8))
        #expect(sink.panicLine == "Kernel panic - not syncing: sysrq triggered crash")
    }

    @Test func escapeSequencesInThePanicLineBecomeVisible() {
        let sink = ConsoleSink(output: nil)
        sink.write(Array("[ 2.0] Kernel panic - not syncing: \u{1b}]0;pwned\u{07}\u{1b}[2J\u{08}\u{202e}".utf8) + [0xff, 0x0d, 0x0a])
        #expect(sink.panicLine == "Kernel panic - not syncing: \\x1b]0;pwned\\x07\\x1b[2J\\x08\\u{202e}\\xff")
    }

    @Test func aHugePanicLineIsBounded() {
        let sink = ConsoleSink(output: nil)
        sink.write(Array("Kernel panic - not syncing: ".utf8) + [UInt8](repeating: 0x1b, count: 1 << 20) + [0x0a])
        let line = sink.panicLine ?? ""
        #expect(line.hasPrefix("Kernel panic - not syncing: \\x1b"))
        #expect(line.utf8.count <= 600)
        #expect(line.hasSuffix("more bytes)"))
        #expect(line.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7f })
    }
}
