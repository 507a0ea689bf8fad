#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS
import Testing

/// Raw mode and window size on a real pseudo-terminal (what `rund run -t` does to the host's).
struct TerminalTests {
    /// A fresh pty pair: (master, slave).
    private func openPseudoTerminal() throws -> (FileDescriptor, FileDescriptor) {
        var master: Int32 = -1, slave: Int32 = -1
        _ = try retryingInterrupts("open pseudo-terminal") { rund_open_pty(&master, &slave, 24, 80, 0, 0) }
        return (FileDescriptor(adopting: master), FileDescriptor(adopting: slave))
    }

    @Test func rawModeIsEnteredAndRestored() throws {
        let (master, slave) = try openPseudoTerminal()
        defer { slave.close(); master.close() }
        #expect(Terminal.isTerminal(slave.rawValue))
        var before = termios()
        tcgetattr(slave.rawValue, &before)
        #expect(before.c_lflag & tcflag_t(ECHO | ICANON | ISIG) != 0)

        let raw = try Terminal.enterRawMode(slave.rawValue)
        var during = termios()
        tcgetattr(slave.rawValue, &during)
        #expect(during.c_lflag & tcflag_t(ECHO | ICANON | ISIG) == 0)
        #expect(during.c_oflag & tcflag_t(OPOST) == 0)

        raw.restore()
        var after = termios()
        tcgetattr(slave.rawValue, &after)
        #expect(after.c_lflag == before.c_lflag && after.c_iflag == before.c_iflag && after.c_oflag == before.c_oflag)
    }

    @Test func windowSizeIsReadFromTheTerminal() throws {
        let (master, slave) = try openPseudoTerminal()
        defer { slave.close(); master.close() }
        var size = winsize(ws_row: 40, ws_col: 120, ws_xpixel: 0, ws_ypixel: 0)
        try master.ioctl("TIOCSWINSZ", UInt(TIOCSWINSZ), &size)
        #expect(Terminal.windowSize(of: slave.rawValue) == WindowSize(rows: 40, columns: 120))

        let pipe = try Pipe.make()
        #expect(!Terminal.isTerminal(pipe.read.rawValue))
        #expect(Terminal.windowSize(of: pipe.read.rawValue) == nil)
    }
}
