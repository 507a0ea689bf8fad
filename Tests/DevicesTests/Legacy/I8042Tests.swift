import Devices
import Synchronization
import Testing

@Suite struct I8042Tests {
    final class ResetCounter: Sendable {
        let count = Mutex(0)
    }

    func make() -> (I8042, ResetCounter) {
        let counter = ResetCounter()
        return (I8042(onReset: { counter.count.withLock { $0 += 1 } }), counter)
    }

    func inb(_ device: I8042, _ port: UInt16) -> UInt8 {
        var byte: UInt8 = 0
        withUnsafeMutableBytes(of: &byte) { device.read(port: port, into: $0) }
        return byte
    }

    func outb(_ device: I8042, _ port: UInt16, _ value: UInt8) {
        withUnsafeBytes(of: value) { device.write(port: port, $0) }
    }

    /// Linux's keyboard-controller reboot: wait for an empty input buffer, then 0xfe to 0x64.
    @Test func resetCommandCallsOnReset() {
        let (device, resets) = make()
        #expect(inb(device, 0x64) & 0x02 == 0)
        outb(device, 0x64, 0xfe)
        #expect(resets.count.withLock { $0 } == 1)
    }

    @Test func pullingTheResetLineThroughTheOutputPortResets() {
        let (device, resets) = make()
        outb(device, 0x64, 0xd0)
        #expect(inb(device, 0x64) & 0x01 == 0x01)
        #expect(inb(device, 0x60) & 0x01 == 0x01)
        outb(device, 0x64, 0xd1)
        outb(device, 0x60, 0x00)
        #expect(resets.count.withLock { $0 } == 1)
    }

    @Test func answersSelfTestAndControlByteWithoutResetting() {
        let (device, resets) = make()
        outb(device, 0x64, 0xaa)
        #expect(inb(device, 0x60) == 0x55)
        #expect(inb(device, 0x64) & 0x01 == 0)
        outb(device, 0x64, 0x60)
        outb(device, 0x60, 0x21)
        outb(device, 0x64, 0x20)
        #expect(inb(device, 0x60) == 0x21)
        outb(device, 0x60, 0xff)  // a keyboard command: acknowledged
        #expect(inb(device, 0x60) == 0xfa)
        #expect(resets.count.withLock { $0 } == 0)
    }
}
