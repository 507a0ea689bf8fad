import StateCoding

/// What the UART holds for a snapshot: its registers and the input the guest has not read yet.
/// Without IER a restored guest's transmit interrupts never come back and tty writers hang.
public struct SerialState: Sendable, Equatable {
    public var interruptEnable: UInt8
    public var lineControl: UInt8
    public var modemControl: UInt8
    public var scratch: UInt8
    public var divisorLow: UInt8
    public var divisorHigh: UInt8
    public var fifoEnabled: Bool
    public var transmitEmptyPending: Bool
    public var overrun: Bool
    /// At most `Serial8250.receiveCapacity` bytes.
    public var pendingInput: [UInt8]
}

extension Serial8250 {
    public func saveState() -> SerialState {
        state.withLock { registers in
            SerialState(
                interruptEnable: registers.interruptEnable, lineControl: registers.lineControl,
                modemControl: registers.modemControl, scratch: registers.scratch,
                divisorLow: registers.divisorLow, divisorHigh: registers.divisorHigh,
                fifoEnabled: registers.fifoEnabled, transmitEmptyPending: registers.transmitEmptyPending,
                overrun: registers.overrun, pendingInput: registers.receiveQueue.contents)
        }
    }

    /// Takes the saved registers (masked to the bits a guest can set) and pending input. Raises
    /// no interrupt: `resumeAfterRestore` does once the interrupt controllers are back.
    public func restoreState(_ saved: SerialState) {
        state.withLock { registers in
            var restored = UARTRegisters()
            restored.interruptEnable = saved.interruptEnable & 0x0f
            restored.lineControl = saved.lineControl
            restored.modemControl = saved.modemControl & 0x1f
            restored.scratch = saved.scratch
            restored.divisorLow = saved.divisorLow
            restored.divisorHigh = saved.divisorHigh
            restored.fifoEnabled = saved.fifoEnabled
            restored.transmitEmptyPending = saved.transmitEmptyPending
            restored.overrun = saved.overrun
            restored.receiveQueue.push(contentsOf: saved.pendingInput.prefix(Self.receiveCapacity))
            registers = restored
        }
    }

    /// Raises the interrupt the guest was owed when the snapshot was taken, if any.
    public func resumeAfterRestore() {
        if state.withLock({ $0.interruptPending }) { interrupt.trigger() }
    }
}

extension SerialState: StateCodable {
    public func encode(to writer: inout StateWriter) {
        for register in [interruptEnable, lineControl, modemControl, scratch, divisorLow, divisorHigh] { writer.put(register) }
        writer.put(fifoEnabled)
        writer.put(transmitEmptyPending)
        writer.put(overrun)
        writer.put(bytes: pendingInput)
    }

    public init(from reader: inout StateReader) throws(StateDecodingError) {
        interruptEnable = try reader.read(UInt8.self, "UART IER")
        lineControl = try reader.read(UInt8.self, "UART LCR")
        modemControl = try reader.read(UInt8.self, "UART MCR")
        scratch = try reader.read(UInt8.self, "UART SCR")
        divisorLow = try reader.read(UInt8.self, "UART DLL")
        divisorHigh = try reader.read(UInt8.self, "UART DLM")
        fifoEnabled = try reader.readBool("UART FIFO enable")
        transmitEmptyPending = try reader.readBool("UART THRE pending")
        overrun = try reader.readBool("UART overrun")
        pendingInput = try reader.readBytes("UART pending input", limit: Serial8250.receiveCapacity)
    }
}
