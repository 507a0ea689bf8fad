import Synchronization

/// The part of the PS/2 keyboard controller a guest uses to reboot: `outb(0xfe, 0x64)` pulses the
/// CPU reset line, which ends the VM. Enough of the command set answers for the kernel's
/// reboot loop (it polls the status port for an empty input buffer) and for simple probes.
public final class I8042: PortIODevice {
    public static let dataPort: UInt16 = 0x60
    public static let commandPort: UInt16 = 0x64

    private static let statusOutputFull: UInt8 = 0x01
    private static let statusSystemFlag: UInt8 = 0x04
    /// Keyboard not inhibited; without it Linux warns "Keylock active".
    private static let statusUnlocked: UInt8 = 0x10
    private static let commandReadControl: UInt8 = 0x20
    private static let commandWriteControl: UInt8 = 0x60
    private static let commandSelfTest: UInt8 = 0xaa
    private static let commandInterfaceTest: UInt8 = 0xab
    private static let commandReadOutputPort: UInt8 = 0xd0
    private static let commandWriteOutputPort: UInt8 = 0xd1
    private static let commandResetCPU: UInt8 = 0xfe
    private static let keyboardAcknowledge: UInt8 = 0xfa

    private struct State {
        var control: UInt8 = 0x45  // keyboard interrupt, system flag, translation
        var outputPort: UInt8 = 0x01  // bit 0 high: CPU not held in reset
        var outputBuffer: UInt8?
        /// The data-port write a previous command asked for.
        var pendingWrite: UInt8?
    }

    private let onReset: @Sendable () -> Void
    private let state = Mutex(State())

    public init(onReset: @escaping @Sendable () -> Void) {
        self.onReset = onReset
    }

    public func read(port: UInt16, into data: UnsafeMutableRawBufferPointer) {
        guard !data.isEmpty else { return }
        data.storeLittleEndian(0)
        data[0] = state.withLock { state -> UInt8 in
            switch port {
            case Self.dataPort:
                defer { state.outputBuffer = nil }
                return state.outputBuffer ?? 0
            case Self.commandPort:
                return Self.statusSystemFlag | Self.statusUnlocked | (state.outputBuffer == nil ? 0 : Self.statusOutputFull)
            default:
                return 0xff
            }
        }
    }

    public func write(port: UInt16, _ data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        let reset = state.withLock { state -> Bool in
            switch port {
            case Self.commandPort: return Self.command(value, &state)
            case Self.dataPort: return Self.data(value, &state)
            default: return false
            }
        }
        if reset { onReset() }
    }

    /// Returns true when the command resets the CPU.
    private static func command(_ command: UInt8, _ state: inout State) -> Bool {
        state.pendingWrite = nil
        switch command {
        case commandReadControl: state.outputBuffer = state.control
        case commandWriteControl, commandWriteOutputPort: state.pendingWrite = command
        case commandSelfTest: state.outputBuffer = 0x55
        case commandInterfaceTest: state.outputBuffer = 0x00
        case commandReadOutputPort: state.outputBuffer = state.outputPort
        case commandResetCPU: return true
        default: break  // Enable/disable and other commands need no emulated effect.
        }
        return false
    }

    private static func data(_ value: UInt8, _ state: inout State) -> Bool {
        defer { state.pendingWrite = nil }
        switch state.pendingWrite {
        case commandWriteControl:
            state.control = value
        case commandWriteOutputPort:
            state.outputPort = value
            // Output port bit 0 is the CPU reset line, active low.
            return value & 0x01 == 0
        default:
            // A byte for the keyboard itself: acknowledge it like a keyboard with nothing to say.
            state.outputBuffer = keyboardAcknowledge
        }
        return false
    }
}
