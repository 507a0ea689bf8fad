#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Turns process signals (SIGTERM, SIGINT) into a callback on an ordinary thread.
/// The handler only writes the signal number to a pipe (async-signal-safe); a thread reads it.
public enum SignalForwarder {
    nonisolated(unsafe) private static var writeEnd: Int32 = -1

    /// Ignores `signal` in the whole process (SIGPIPE: a write to a closed pipe fails with EPIPE instead).
    public static func ignore(_ signal: Int32) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = SIG_IGN
        sigemptyset(&action.sa_mask)
        sigaction(signal, &action, nil)
    }

    /// Installs handlers for `signals`; `callback` runs on a dedicated thread for each delivery.
    /// Call once per process.
    public static func forward(_ signals: [Int32], to callback: @escaping @Sendable (Int32) -> Void) throws {
        var fds: [Int32] = [0, 0]
        _ = try retryingInterrupts("pipe2") { rund_pipe_cloexec(&fds) }
        writeEnd = fds[1]
        let readEnd = FileDescriptor(adopting: fds[0])
        for signal in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { number in
                var byte = UInt8(truncatingIfNeeded: number)
                _ = Glibc.write(SignalForwarder.writeEnd, &byte, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(signal, &action, nil)
        }
        _ = try OSThread.spawn(name: "signals") {
            var byte: UInt8 = 0
            while true {
                let n = Glibc.read(readEnd.rawValue, &byte, 1)
                if n == 1 { callback(Int32(byte)) } else if n == 0 || (n < 0 && errno != EINTR) { return }
            }
        }
    }
}
