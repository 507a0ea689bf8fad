import Devices
import Logging
import Synchronization
import Testing

/// A real swift-log backend that keeps every line, at every level.
struct CollectingLogHandler: LogHandler {
    final class Lines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    let lines: Lines
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lines.append("\(event.level) \(event.message)")
    }
}

/// Log lines a hostile driver can trigger at will (wrong register widths, unknown registers, a
/// broken queue set up again and again, malformed block requests) stay a handful however often
/// it tries, even with every level enabled.
struct GuestTriggeredLogTests {
    @Test func aFloodOfHostileAccessesLogsABoundedNumberOfLines() throws {
        let lines = CollectingLogHandler.Lines()
        let logger = Logger(label: "test") { _ in CollectingLogHandler(lines: lines) }
        let disk = try VirtioBlock(file: try makeDisk(numberedSectors()), readOnly: false, identifier: "flood", logger: logger)
        let driver = try VirtioTestDriver(device: disk, logger: logger)
        let started = ContinuousClock.now
        let attempts = 100_000
        for _ in 0..<attempts {
            withUnsafeBytes(of: UInt8(1)) { driver.transport.write(offset: 0x70, $0) }  // wrong width
            driver.write(0x0c8, 1)  // no such register
        }
        for _ in 0..<2_000 {
            _ = driver.initialize(queueSize: 12)  // not a power of 2: DEVICE_NEEDS_RESET, a warning
        }
        #expect(driver.initialize())
        for _ in 0..<2_000 {
            _ = try driver.blockRequest(type: VirtioTestDriver.typeRead, sector: 0, reading: 100)  // not whole sectors
        }
        let elapsed = ContinuousClock.now - started
        // Each call site: 10 lines per 10 s, plus one "suppressed" line per later window.
        let windows = Int(elapsed / .seconds(10)) + 1
        let sites = 5  // width, unknown register, needs reset, driver ready, data length
        let all = lines.all
        #expect(all.count <= sites * windows * 11, "\(all.count) lines for \(2 * attempts + 4_000) hostile accesses")
        #expect(all.contains { $0.hasPrefix("warning virtio-mmio: device needs reset") })
        #expect(all.contains { $0.hasPrefix("debug virtio-blk: data length 100") })
    }
}
