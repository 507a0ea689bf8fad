/// The UART's register file and the 16550A rules that tie the registers together.
struct UARTRegisters {
    // Register offsets (DLAB selects the divisor latch at 0 and 1).
    static let data: UInt16 = 0, interruptEnable: UInt16 = 1, interruptIdentify: UInt16 = 2
    static let lineControl: UInt16 = 3, modemControl: UInt16 = 4, lineStatus: UInt16 = 5
    static let modemStatus: UInt16 = 6, scratch: UInt16 = 7

    static let ierReceive: UInt8 = 0x01, ierTransmitEmpty: UInt8 = 0x02
    static let iirNoInterrupt: UInt8 = 0x01, iirTransmitEmpty: UInt8 = 0x02, iirReceive: UInt8 = 0x04
    static let iirFIFOEnabled: UInt8 = 0xc0
    static let fcrEnable: UInt8 = 0x01, fcrClearReceive: UInt8 = 0x02
    static let lcrDivisorLatch: UInt8 = 0x80
    static let mcrLoopback: UInt8 = 0x10
    static let lsrDataReady: UInt8 = 0x01, lsrOverrun: UInt8 = 0x02, lsrTransmitterEmpty: UInt8 = 0x60
    // Modem lines as a connected terminal shows them: carrier, data set ready, clear to send.
    static let msrConnected: UInt8 = 0xb0

    var interruptEnable: UInt8 = 0
    var lineControl: UInt8 = 0x03
    var modemControl: UInt8 = 0x08
    var scratch: UInt8 = 0
    var divisorLow: UInt8 = 0x0c  // 9600 baud
    var divisorHigh: UInt8 = 0
    var fifoEnabled = false
    /// THR-empty interrupt latched: set when the transmitter empties with THRI enabled,
    /// cleared by reading IIR (when it is the reported source) or writing THR.
    var transmitEmptyPending = false
    /// Input the guest has not read yet: console input and, in loopback, its own output. Fixed
    /// size, so a guest that writes without reading (or keeps one byte pending) cannot grow it.
    var receiveQueue = ByteRing(capacity: Serial8250.receiveCapacity)
    /// A byte was dropped since LSR was last read (LSR OE, as a 16550's FIFO overrun).
    var overrun = false

    var dataReady: Bool { !receiveQueue.isEmpty }
    var divisorLatch: Bool { lineControl & Self.lcrDivisorLatch != 0 }

    /// The interrupt source IIR reports, highest priority first.
    var interruptIdentification: UInt8 {
        if interruptEnable & Self.ierReceive != 0 && dataReady { return Self.iirReceive }
        if interruptEnable & Self.ierTransmitEmpty != 0 && transmitEmptyPending { return Self.iirTransmitEmpty }
        return Self.iirNoInterrupt
    }

    var interruptPending: Bool { interruptIdentification != Self.iirNoInterrupt }

    /// Runs `change` and reports whether an interrupt became pending (a rising edge to signal).
    mutating func updatingInterrupt(_ change: (inout UARTRegisters) -> Void) -> Bool {
        let before = interruptPending
        change(&self)
        return !before && interruptPending
    }

    mutating func receive(_ bytes: some Sequence<UInt8>) {
        if receiveQueue.push(contentsOf: bytes) > 0 { overrun = true }
    }

    mutating func read(_ offset: UInt16) -> UInt8 {
        switch offset {
        case Self.data where divisorLatch: return divisorLow
        case Self.data: return receiveQueue.pop() ?? 0
        case Self.interruptEnable where divisorLatch: return divisorHigh
        case Self.interruptEnable: return interruptEnable
        case Self.interruptIdentify:
            let identification = interruptIdentification
            if identification == Self.iirTransmitEmpty { transmitEmptyPending = false }
            return identification | (fifoEnabled ? Self.iirFIFOEnabled : 0)
        case Self.lineControl: return lineControl
        case Self.modemControl: return modemControl
        case Self.lineStatus:
            defer { overrun = false }
            return Self.lsrTransmitterEmpty | (dataReady ? Self.lsrDataReady : 0) | (overrun ? Self.lsrOverrun : 0)
        case Self.modemStatus: return modemStatus
        case Self.scratch: return scratch
        default: return 0
        }
    }

    /// Applies a register write; returns a byte to send to the console, if any.
    mutating func write(_ offset: UInt16, _ value: UInt8) -> UInt8? {
        switch offset {
        case Self.data where divisorLatch: divisorLow = value
        case Self.data:
            // The byte leaves at once, so THR is empty again straight away.
            transmitEmptyPending = true
            if modemControl & Self.mcrLoopback != 0 {
                // The guest's own byte comes back to it, into the same bounded queue.
                if !receiveQueue.push(value) { overrun = true }
                return nil
            }
            return value
        case Self.interruptEnable where divisorLatch: divisorHigh = value
        case Self.interruptEnable:
            let enablesTransmitEmpty = value & Self.ierTransmitEmpty != 0 && interruptEnable & Self.ierTransmitEmpty == 0
            interruptEnable = value & 0x0f
            // Enabling THRI while THR is empty raises it, which Linux's startup test expects.
            if enablesTransmitEmpty { transmitEmptyPending = true }
        case Self.interruptIdentify:
            fifoEnabled = value & Self.fcrEnable != 0
            if value & Self.fcrClearReceive != 0 { receiveQueue.removeAll() }
        case Self.lineControl: lineControl = value
        case Self.modemControl: modemControl = value & 0x1f
        case Self.scratch: scratch = value
        default: break  // LSR and MSR are read-only.
        }
        return nil
    }

    /// In loopback the modem outputs feed the modem inputs: RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD.
    var modemStatus: UInt8 {
        guard modemControl & Self.mcrLoopback != 0 else { return Self.msrConnected }
        let mcr = modemControl
        var msr: UInt8 = 0
        if mcr & 0x02 != 0 { msr |= 0x10 }
        if mcr & 0x01 != 0 { msr |= 0x20 }
        if mcr & 0x04 != 0 { msr |= 0x40 }
        if mcr & 0x08 != 0 { msr |= 0x80 }
        return msr
    }
}
