import Devices
import Testing

@Suite struct Serial8250Tests {
    let interrupts = InterruptCounter()
    let console = OutputRecorder()
    let uart: Serial8250

    init() {
        let console = console
        uart = Serial8250(interrupt: interrupts, output: { console.append($0) })
    }

    func inb(_ offset: UInt16) -> UInt8 {
        var byte: UInt8 = 0
        withUnsafeMutableBytes(of: &byte) { uart.read(port: 0x3f8 + offset, into: $0) }
        return byte
    }

    func outb(_ offset: UInt16, _ value: UInt8) {
        withUnsafeBytes(of: value) { uart.write(port: 0x3f8 + offset, $0) }
    }

    @Test func transmittedBytesReachTheConsoleAndTheTransmitterStaysEmpty() {
        for byte in "hi\n".utf8 { outb(0, byte) }
        #expect(console.recorded == Array("hi\n".utf8))
        #expect(inb(5) == 0x60)  // THRE | TEMT, no data ready
        #expect(interrupts.edges == 0)  // no interrupt enabled
    }

    /// The checks of Linux's autoconfig(): IER holds 4 bits, loopback reflects MCR into MSR,
    /// and an enabled FIFO shows in IIR bits 6-7 (a 16550A).
    @Test func passesLinuxProbe() {
        outb(1, 0)
        #expect(inb(1) & 0x0f == 0)
        outb(1, 0x0f)
        #expect(inb(1) & 0x0f == 0x0f)
        outb(1, 0)
        outb(4, 0x10 | 0x0a)  // LOOP | OUT2 | RTS
        #expect(inb(6) & 0xf0 == 0x90)  // DCD | CTS
        outb(4, 0x10 | 0x05)  // LOOP | OUT1 | DTR
        #expect(inb(6) & 0xf0 == 0x60)  // RI | DSR
        outb(4, 0x08)
        #expect(inb(6) & 0xf0 == 0xb0)  // a connected terminal
        outb(3, 0)
        outb(2, 0x01)
        #expect(inb(2) >> 6 == 3)
        outb(2, 0)
        #expect(inb(2) >> 6 == 0)
        #expect(inb(7) == 0)
        outb(7, 0x5a)
        #expect(inb(7) == 0x5a)
    }

    /// Linux's startup THRE test: enabling THRI with THR empty must raise it, reading IIR
    /// clears it, and re-enabling raises it again.
    @Test func transmitEmptyInterruptFollowsTheDriversExpectations() {
        #expect(inb(2) & 0x01 == 0x01)
        outb(1, 0x02)
        #expect(interrupts.edges == 1)
        #expect(inb(2) & 0x0f == 0x02)
        #expect(inb(2) & 0x0f == 0x01)  // reading IIR cleared the THRE source
        outb(1, 0)
        outb(1, 0x02)
        #expect(interrupts.edges == 2)
        #expect(inb(2) & 0x0f == 0x02)
        // Each byte written empties THR at once: a new edge after the previous one was taken.
        outb(0, UInt8(ascii: "a"))
        #expect(interrupts.edges == 3)
        outb(0, UInt8(ascii: "b"))
        #expect(interrupts.edges == 3)  // still pending: no new edge
        #expect(inb(2) & 0x0f == 0x02)
        outb(1, 0)
        #expect(inb(2) & 0x0f == 0x01)
        #expect(console.recorded == Array("ab".utf8))
    }

    @Test func receivedInputRaisesDataReadyAndItsInterrupt() {
        outb(1, 0x01)
        uart.enqueueInput(Array("ok".utf8))
        #expect(interrupts.edges == 1)
        #expect(inb(5) & 0x01 == 0x01)
        #expect(inb(2) & 0x0f == 0x04)
        #expect(inb(0) == UInt8(ascii: "o"))
        uart.enqueueInput(Array("!".utf8))
        #expect(interrupts.edges == 1)  // already pending
        #expect(inb(0) == UInt8(ascii: "k"))
        #expect(inb(0) == UInt8(ascii: "!"))
        #expect(inb(5) & 0x01 == 0)
        #expect(inb(2) & 0x01 == 0x01)
        // FCR can flush unread input.
        uart.enqueueInput([1, 2, 3])
        outb(2, 0x03)
        #expect(inb(5) & 0x01 == 0)
    }

    @Test func loopbackSendsTransmittedBytesBackToTheReceiver() {
        outb(4, 0x10)
        outb(0, 0x42)
        #expect(console.recorded.isEmpty)
        #expect(inb(5) & 0x01 == 0x01)
        #expect(inb(0) == 0x42)
    }

    /// A guest writing in loopback without reading fills the receive queue once; the rest is
    /// dropped, counted and flagged in LSR (OE, cleared by reading LSR), as a real FIFO overruns.
    @Test func loopbackFloodFillsTheQueueOnceAndDropsTheRest() {
        outb(4, 0x10)
        let sent = 1_000_000
        for index in 0..<sent { outb(0, UInt8(truncatingIfNeeded: index)) }
        #expect(console.recorded.isEmpty)
        #expect(inb(5) == 0x60 | 0x02 | 0x01)  // THRE|TEMT, overrun, data ready
        #expect(inb(5) == 0x60 | 0x01)  // OE was cleared by the read
        var received: [UInt8] = []
        while inb(5) & 0x01 != 0 { received.append(inb(0)) }
        #expect(received == (0..<Serial8250.receiveCapacity).map { UInt8(truncatingIfNeeded: $0) })
        #expect(uart.droppedInputBytes == UInt64(sent - Serial8250.receiveCapacity))
    }

    /// Keeping one byte pending (write one, read the one before) forever: every byte comes
    /// back in order and nothing is dropped. (The queue this replaced grew by a byte each time.)
    @Test func loopbackWithOneBytePendingDeliversEveryByte() {
        outb(4, 0x10)
        outb(0, 0)
        var mismatches = 0
        for index in 1...2_000_000 {
            outb(0, UInt8(truncatingIfNeeded: index))
            if inb(0) != UInt8(truncatingIfNeeded: index - 1) { mismatches += 1 }
        }
        #expect(mismatches == 0)
        #expect(inb(5) == 0x60 | 0x01)
        #expect(uart.droppedInputBytes == 0)
        // Leaving loopback sends bytes to the console again; the pending one is still there.
        outb(4, 0x08)
        outb(0, UInt8(ascii: "x"))
        #expect(console.recorded == [UInt8(ascii: "x")])
        #expect(inb(0) == UInt8(truncatingIfNeeded: 2_000_000))
    }

    /// Console input beyond the queue's room is dropped the same way, with one byte pending.
    @Test func inputFloodIsBoundedToo() {
        uart.enqueueInput([0xaa])
        for _ in 0..<1000 { uart.enqueueInput([UInt8](repeating: 0x55, count: 4096)) }
        #expect(uart.droppedInputBytes == UInt64(1000 * 4096 - (Serial8250.receiveCapacity - 1)))
        #expect(inb(0) == 0xaa)
        var count = 0
        while inb(5) & 0x01 != 0 { #expect(inb(0) == 0x55); count += 1 }
        #expect(count == Serial8250.receiveCapacity - 1)
    }

    @Test func divisorLatchSharesPortsWithDataAndInterruptEnable() {
        outb(1, 0x01)
        outb(3, 0x83)
        outb(0, 0x01)
        outb(1, 0x00)
        #expect(inb(0) == 0x01 && inb(1) == 0x00)
        outb(3, 0x03)
        #expect(inb(1) == 0x01)  // IER kept its value
        #expect(inb(3) == 0x03)
        #expect(console.recorded.isEmpty)
    }

    @Test func portsOutsideTheUARTAreNotDecoded() {
        var byte: UInt8 = 0
        withUnsafeMutableBytes(of: &byte) { uart.read(port: 0x2f8, into: $0) }
        #expect(byte == 0xff)
        withUnsafeBytes(of: UInt8(0x41)) { uart.write(port: 0x400, $0) }
        #expect(console.recorded.isEmpty)
    }
}
