#if canImport(Glibc)
import Glibc
#endif
import Boot
import Devices
import HostOS
import Synchronization
import Untrusted

/// The ACPI sleep control register of a hardware-reduced platform (FADT SLEEP_CONTROL_REG).
/// Linux powers off by writing SLP_TYP=S5 with SLP_EN set.
final class SleepControlPort: PortIODevice {
    let onPowerOff: @Sendable () -> Void

    init(onPowerOff: @escaping @Sendable () -> Void) {
        self.onPowerOff = onPowerOff
    }

    func read(port: UInt16, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count { data[i] = 0 }
    }

    func write(port: UInt16, _ data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        if X86Layout.isPowerOffRequest(value) { onPowerOff() }
    }
}

/// A page the guest's init writes to once it runs (`busybox devmem ADDR 8 1` works from a
/// shell; Debian kernels have no /dev/port): the VMM timestamps the first write.
/// Used by `rund bench boot` to measure VMM start → guest init.
final class BootMarker: MMIODevice {
    private let start: UInt64
    private let firstWrite = Mutex<UInt64?>(nil)
    /// Runs on the writing vCPU's thread at the first write (a test hook).
    private let onFirstWrite: (@Sendable () -> Void)?

    init(start: UInt64, onFirstWrite: (@Sendable () -> Void)? = nil) {
        self.start = start
        self.onFirstWrite = onFirstWrite
    }

    /// Nanoseconds from VMM start to the first marker write, if any.
    var elapsedNanoseconds: UInt64? { firstWrite.withLock { $0 } }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count { data[i] = 0 }
    }

    func write(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        let now = MonotonicNanoseconds.now()
        let first = firstWrite.withLock { time -> Bool in
            guard time == nil else { return false }
            time = now - start
            return true
        }
        if first { onFirstWrite?() }
    }
}

/// Where the guest console goes, and what it said: the sink remembers a kernel panic line so
/// the VM's end can be reported as a panic rather than a reboot, and the last few lines for
/// reports of a guest that stopped making progress. Both are guest text bound for the operator's
/// terminal, so they come out escaped and bounded (`UntrustedText`).
final class ConsoleSink: Sendable {
    static let panicMarker = Array("Kernel panic - not syncing".utf8)
    private static let timestampBytes = Array("[] .0123456789".utf8)
    static let keptLines = 5
    static let keptLineBytes = 160
    private struct Scan {
        var line: [UInt8] = []
        var panicLine: String?
        var recent: [[UInt8]] = []
    }

    private let output: FileDescriptor?
    private let scan = Mutex(Scan())

    init(output: FileDescriptor?) {
        self.output = output
    }

    var panicLine: String? { scan.withLock { $0.panicLine } }

    /// The console's last lines (the unfinished one included), escaped; nil when the guest
    /// wrote nothing.
    var lastLines: [String]? {
        scan.withLock { state in
            let lines = (state.recent + (state.line.isEmpty ? [] : [state.line])).suffix(Self.keptLines)
            guard !lines.isEmpty else { return nil }
            return lines.map { UntrustedText.escaped(bytes: $0, limit: Self.keptLineBytes) }
        }
    }

    func write(_ bytes: [UInt8]) {
        if let output { try? output.writeAll(bytes) }
        scan.withLock { state in
            for byte in bytes {
                if byte == UInt8(ascii: "\n") {
                    if state.panicLine == nil, state.line.firstRange(of: Self.panicMarker) != nil {
                        // Drop the "[    1.234567] " timestamp prefix and the serial driver's CR.
                        let text = state.line.drop { Self.timestampBytes.contains($0) }
                        let end = text.lastIndex { $0 != UInt8(ascii: "\r") }.map { $0 + 1 } ?? text.startIndex
                        state.panicLine = UntrustedText.escaped(bytes: text[..<end])
                    }
                    let line = state.line.last == UInt8(ascii: "\r") ? state.line.dropLast() : state.line[...]
                    if !line.isEmpty {
                        if state.recent.count == Self.keptLines { state.recent.removeFirst() }
                        state.recent.append(Array(line.prefix(4 * Self.keptLineBytes)))
                    }
                    state.line.removeAll(keepingCapacity: true)
                } else if state.line.count < 4096 {
                    state.line.append(byte)
                }
            }
        }
    }
}
