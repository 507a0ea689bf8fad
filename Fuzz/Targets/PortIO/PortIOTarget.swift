import DeviceFuzzing
import Devices
import FuzzSupport

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    PortIOTarget.run(FuzzInput(data, size))
    return 0
}

/// The port I/O devices a guest reaches with in/out instructions (Sources/Devices/Serial8250*.swift,
/// I8042.swift): each step is a read or write of any width at any port around COM1 and the
/// keyboard controller, or console input arriving from the host.
@main
enum PortIOTarget {
    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        let serial = Serial8250(interrupt: IgnoredInterrupt()) { _ in }
        let keyboard = I8042 {}
        var buffer: UInt32 = 0
        for _ in 0..<256 where !input.isEmpty {
            let step = input.byte()
            // Ports 0x3f0...0x3ff and 0x60...0x67: the devices' own and their neighbours.
            let port = step & 0x40 != 0 ? UInt16(0x3f0) + UInt16(input.byte() & 0xf) : UInt16(0x60) + UInt16(input.byte() & 7)
            let device: any PortIODevice = port >= 0x3f0 ? serial : keyboard
            let width = [1, 2, 4, 0][Int(step >> 4 & 3)]
            switch step & 3 {
            case 0:
                buffer = UInt32(input.byte())
                withUnsafeBytes(of: &buffer) { device.write(port: port, UnsafeRawBufferPointer(rebasing: $0[0..<width])) }
            case 1, 2:
                withUnsafeMutableBytes(of: &buffer) {
                    device.read(port: port, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<width]))
                }
            default:
                serial.enqueueInput(input.bytes(Int(input.byte())))
            }
        }
    }

    /// Linux's 8250 probe (scratch, loopback, FIFO, divisor) and its i8042 reboot sequence.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func out(_ port: UInt16, _ value: UInt8) -> [UInt8] {
            port >= 0x3f0 ? [0x40, UInt8(port - 0x3f0), value] : [0x00, UInt8(port - 0x60), value]
        }
        func inb(_ port: UInt16) -> [UInt8] { port >= 0x3f0 ? [0x41, UInt8(port - 0x3f0)] : [0x01, UInt8(port - 0x60)] }
        let probe =
            out(0x3ff, 0x55) + inb(0x3ff) + out(0x3fc, 0x10) + inb(0x3fe) + out(0x3fc, 0x00)
            + out(0x3fa, 0x07) + inb(0x3fa) + out(0x3fb, 0x80) + out(0x3f8, 0x01) + out(0x3f9, 0x00) + out(0x3fb, 0x03)
            + out(0x3f9, 0x0f) + inb(0x3fa) + out(0x3f8, 0x41) + [0x03, 0, 3] + Array("ls\n".utf8) + inb(0x3fd) + inb(0x3f8)
        let reboot =
            inb(0x64) + out(0x64, 0x20) + inb(0x60) + out(0x64, 0xaa) + inb(0x60) + out(0x64, 0xd1) + out(0x60, 0xdf)
            + out(0x64, 0xfe)
        return [("serial-probe", probe), ("keyboard-reboot", reboot)]
    }
}
