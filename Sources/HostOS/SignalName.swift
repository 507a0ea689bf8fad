#if canImport(Glibc)
import Glibc
#endif

/// Signal names as people write them ("SIGTERM"), for messages.
public enum SignalName {
    private static let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
        SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGCHLD: "SIGCHLD",
        SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP", SIGWINCH: "SIGWINCH", SIGSYS: "SIGSYS",
    ]

    public static func of(_ signal: Int32) -> String {
        names[signal] ?? "signal \(signal)"
    }
}
