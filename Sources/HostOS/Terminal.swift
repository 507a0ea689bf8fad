#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// A terminal's window size in character cells (and pixels, often 0), as TIOCGWINSZ gives it.
public struct WindowSize: Sendable, Equatable, CustomStringConvertible {
    public var rows: UInt16
    public var columns: UInt16
    public var widthPixels: UInt16
    public var heightPixels: UInt16

    public init(rows: UInt16, columns: UInt16, widthPixels: UInt16 = 0, heightPixels: UInt16 = 0) {
        self.rows = rows
        self.columns = columns
        self.widthPixels = widthPixels
        self.heightPixels = heightPixels
    }

    /// What a terminal gets when there is no real one to copy the size from.
    public static let fallback = WindowSize(rows: 24, columns: 80)

    public var description: String { "\(rows)x\(columns)" }
}

/// The host's terminal: is a descriptor one, its window size, raw mode.
public enum Terminal {
    public static func isTerminal(_ fd: Int32) -> Bool {
        isatty(fd) == 1
    }

    /// The window size of the terminal on `fd`; nil when `fd` is no terminal (or reports 0x0).
    public static func windowSize(of fd: Int32) -> WindowSize? {
        var size = winsize()
        guard withUnsafeMutablePointer(to: &size, { rund_ioctl_ptr(fd, UInt(TIOCGWINSZ), $0) }) == 0,
            size.ws_row > 0, size.ws_col > 0
        else { return nil }
        return WindowSize(rows: size.ws_row, columns: size.ws_col, widthPixels: size.ws_xpixel, heightPixels: size.ws_ypixel)
    }

    /// Puts the terminal on `fd` in raw mode (no echo, no line editing, no signals from keys,
    /// no output processing) and returns what restores it.
    public static func enterRawMode(_ fd: Int32) throws -> RawMode {
        var saved = termios()
        _ = try retryingInterrupts("tcgetattr") { tcgetattr(fd, &saved) }
        var raw = saved
        cfmakeraw(&raw)
        _ = try retryingInterrupts("tcsetattr") { tcsetattr(fd, TCSANOW, &raw) }
        return RawMode(fd: fd, saved: saved)
    }

    /// A terminal in raw mode and the settings it had before.
    public final class RawMode: Sendable {
        private let fd: Int32
        private let saved: termios

        fileprivate init(fd: Int32, saved: termios) {
            self.fd = fd
            self.saved = saved
        }

        /// Puts the saved settings back (after output already written has been sent).
        /// Idempotent: restoring twice writes the same settings twice.
        public func restore() {
            var settings = saved
            _ = try? retryingInterrupts("tcsetattr") { tcsetattr(fd, TCSADRAIN, &settings) }
        }
    }
}
