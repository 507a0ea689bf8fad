import Synchronization

/// A 16550A UART as Linux's 8250 driver probes and drives it. Output is immediate, so the
/// transmitter is always empty (LSR THRE|TEMT); input waits in a fixed-size receive ring.
public final class Serial8250: PortIODevice {
    /// Number of consecutive ports the UART occupies from `base`.
    public static let portCount: UInt16 = 8
    /// Unread input beyond this is dropped (and counted), so neither a flood of console input nor
    /// a guest looping its own output back (MCR LOOP) can grow memory: the ring is allocated once.
    public static let receiveCapacity = 4096

    public let base: UInt16
    let interrupt: any InterruptLine
    private let output: @Sendable ([UInt8]) -> Void
    let state = Mutex(UARTRegisters())

    public init(base: UInt16 = 0x3f8, interrupt: any InterruptLine, output: @escaping @Sendable ([UInt8]) -> Void) {
        self.base = base
        self.interrupt = interrupt
        self.output = output
    }

    /// Received bytes dropped because the guest had not read the ones before (input and loopback).
    public var droppedInputBytes: UInt64 { state.withLock { $0.receiveQueue.dropped } }

    /// Queues bytes for the guest to read (console input); raises the receive interrupt if enabled.
    public func enqueueInput(_ bytes: [UInt8]) {
        guard !bytes.isEmpty else { return }
        let raise = state.withLock { registers in
            registers.updatingInterrupt { $0.receive(bytes) }
        }
        if raise { interrupt.trigger() }
    }

    public func read(port: UInt16, into data: UnsafeMutableRawBufferPointer) {
        guard !data.isEmpty else { return }
        data.storeLittleEndian(0)
        guard let offset = registerOffset(port) else {
            data[0] = 0xff
            return
        }
        let (value, raise) = state.withLock { registers in
            var value: UInt8 = 0
            let raise = registers.updatingInterrupt { value = $0.read(offset) }
            return (value, raise)
        }
        data[0] = value
        if raise { interrupt.trigger() }
    }

    public func write(port: UInt16, _ data: UnsafeRawBufferPointer) {
        guard let offset = registerOffset(port), let value = data.first else { return }
        let raise = state.withLock { registers in
            registers.updatingInterrupt { registers in
                // Output happens under the lock so bytes from several vCPUs keep their order.
                if let byte = registers.write(offset, value) { output([byte]) }
            }
        }
        if raise { interrupt.trigger() }
    }

    private func registerOffset(_ port: UInt16) -> UInt16? {
        guard port >= base, port - base < Self.portCount else { return nil }
        return port - base
    }
}
