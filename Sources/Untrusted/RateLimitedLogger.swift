import Logging
import Synchronization

/// A logger for lines a hostile party can trigger over and over (a guest's malformed
/// descriptors, protocol violations): each call site logs at most `burst` lines per `interval`;
/// the rest are counted, and the site's next line after the interval is preceded by one
/// "suppressed N similar messages" line. A flood then costs the host a few lines per interval,
/// and a level the logger filters out costs nothing at all.
///
/// The count is reported when the site logs again; a flood that simply stops leaves its last
/// suppressed count unreported.
public final class RateLimitedLogger: Sendable {
    public let logger: Logger
    public let burst: Int
    public let interval: Duration
    private let now: @Sendable () -> ContinuousClock.Instant
    private let sites = Mutex<[Site: Window]>([:])

    private struct Site: Hashable {
        var file: String
        var line: UInt
    }

    private struct Window {
        var start: ContinuousClock.Instant
        var logged = 0
        var suppressed = 0
    }

    /// `now` is the clock (tests pass one they move by hand).
    public init(
        _ logger: Logger, burst: Int = 10, interval: Duration = .seconds(10),
        now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }
    ) {
        self.logger = logger
        self.burst = max(burst, 1)
        self.interval = interval
        self.now = now
    }

    public func log(
        level: Logger.Level, _ message: @autoclosure () -> Logger.Message,
        metadata: @autoclosure () -> Logger.Metadata? = nil,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        guard logger.logLevel <= level else { return }
        let site = Site(file: file, line: line)
        let instant = now()
        // (log this line?, suppressed lines to report first)
        let (admit, suppressed) = sites.withLock { sites -> (Bool, Int) in
            var window = sites[site] ?? Window(start: instant)
            var reported = 0
            if instant - window.start >= interval {
                reported = window.suppressed
                window = Window(start: instant)
            }
            let admit = window.logged < burst
            if admit { window.logged += 1 } else { window.suppressed = window.suppressed < Int.max ? window.suppressed + 1 : Int.max }
            sites[site] = window
            return (admit, reported)
        }
        if suppressed > 0 {
            logger.log(level: level, "suppressed \(suppressed) similar messages", file: file, function: function, line: line)
        }
        if admit {
            logger.log(level: level, message(), metadata: metadata(), file: file, function: function, line: line)
        }
    }

    public func trace(
        _ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata? = nil,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        log(level: .trace, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    public func debug(
        _ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata? = nil,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        log(level: .debug, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    public func info(
        _ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata? = nil,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        log(level: .info, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    public func warning(
        _ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata? = nil,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        log(level: .warning, message(), metadata: metadata(), file: file, function: function, line: line)
    }

    public func error(
        _ message: @autoclosure () -> Logger.Message, metadata: @autoclosure () -> Logger.Metadata? = nil,
        file: String = #fileID, function: String = #function, line: UInt = #line
    ) {
        log(level: .error, message(), metadata: metadata(), file: file, function: function, line: line)
    }
}
