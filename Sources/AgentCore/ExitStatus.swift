/// How a process ended, decoded from a waitpid(2) status word.
public struct ExitStatus: Sendable, Equatable {
    /// The exit code when it exited, else 0.
    public var code: Int32
    /// The terminating signal when killed, else 0.
    public var signal: Int32

    public init(code: Int32, signal: Int32) {
        self.code = code
        self.signal = signal
    }

    /// WIFEXITED/WEXITSTATUS/WTERMSIG, which Swift does not import (they are macros).
    public init(waitStatus status: Int32) {
        if status & 0x7f == 0 {
            self.init(code: (status >> 8) & 0xff, signal: 0)
        } else {
            self.init(code: 0, signal: status & 0x7f)
        }
    }
}
