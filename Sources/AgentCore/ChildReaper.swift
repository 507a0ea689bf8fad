#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// PID 1's reaper: every child, orphans included, is collected so no zombie stays. SIGCHLD must
/// be blocked in every thread (`blockChildSignal()` before any thread starts) so this thread
/// can sigwait for it; spawned processes get an empty mask back.
public enum ChildReaper {
    public static func blockChildSignal() {
        SignalMask.block([SIGCHLD])
    }

    public static func start(reportingTo table: ProcessTable) throws {
        try DetachedThread.start(name: "reaper") {
            while true {
                var status: Int32 = 0
                let pid = waitpid(-1, &status, WNOHANG)
                if pid > 0 {
                    table.childExited(pid: pid, waitStatus: status)
                    continue
                }
                if pid < 0 && errno == EINTR { continue }
                // No exited child right now (or none at all): sleep until the next SIGCHLD.
                _ = SignalMask.wait([SIGCHLD])
            }
        }
    }
}
