import Logging
import Synchronization
import Testing
import Untrusted

/// A real swift-log backend that keeps every line it is given.
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

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let instant = Mutex(ContinuousClock.now)
    var now: ContinuousClock.Instant { instant.withLock { $0 } }
    func advance(by duration: Duration) { instant.withLock { $0 += duration } }
}

struct RateLimitedLoggerTests {
    func makeLogger(level: Logger.Level = .trace) -> (Logger, CollectingLogHandler.Lines) {
        let lines = CollectingLogHandler.Lines()
        var handler = CollectingLogHandler(lines: lines)
        handler.logLevel = level
        return (Logger(label: "test", factory: { _ in handler }), lines)
    }

    @Test func aFloodOfTriggersLogsABoundedNumberOfLines() {
        let (logger, lines) = makeLogger()
        let clock = ManualClock()
        let limited = RateLimitedLogger(logger, burst: 10, interval: .seconds(10), now: { clock.now })
        for index in 0..<100_000 {
            limited.warning("guest descriptor \(index) is bad")
            // The flood lasts 100 s of the hand-moved clock: 11 windows.
            if index % 10_000 == 9_999 { clock.advance(by: .seconds(10)) }
        }
        let all = lines.all
        // Per 10 s window: at most 10 lines, plus one "suppressed" line for the window before.
        #expect(all.count <= 11 * 10 + 11)
        #expect(all.count >= 10)
        #expect(Array(all.prefix(10)) == (0..<10).map { "warning guest descriptor \($0) is bad" })
        #expect(all[10] == "warning suppressed 9990 similar messages")
        #expect(all[11] == "warning guest descriptor 10000 is bad")
    }

    @Test func aFloodAgainstTheRealClockStaysBounded() {
        let (logger, lines) = makeLogger()
        let limited = RateLimitedLogger(logger, burst: 5, interval: .seconds(1))
        let started = ContinuousClock.now
        for index in 0..<100_000 { limited.debug("vsock packet \(index) refused") }
        let elapsed = ContinuousClock.now - started
        // However long the loop took: 5 lines and one summary per started second.
        let windows = Int(elapsed / .seconds(1)) + 1
        #expect(lines.all.count <= windows * 6)
        #expect(lines.all.count >= 5)
    }

    @Test func eachCallSiteHasItsOwnBudget() {
        let (logger, lines) = makeLogger()
        let limited = RateLimitedLogger(logger, burst: 2, interval: .seconds(3600))
        for _ in 0..<50 {
            limited.warning("first site")
            limited.error("second site")
        }
        #expect(lines.all == ["warning first site", "error second site", "warning first site", "error second site"])
    }

    @Test func filteredLevelsAreNeitherLoggedNorCounted() {
        let (logger, lines) = makeLogger(level: .warning)
        let clock = ManualClock()
        let limited = RateLimitedLogger(logger, burst: 1, interval: .seconds(1), now: { clock.now })
        for _ in 0..<1000 { limited.debug("invisible") }
        let visible = { limited.warning("visible") }  // one call site
        visible()
        visible()
        clock.advance(by: .seconds(2))
        visible()
        #expect(lines.all == ["warning visible", "warning suppressed 1 similar messages", "warning visible"])
    }
}
