#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// How PID 1 leaves: it must never exit (the kernel would panic), so every end is a power-off.
public enum GuestPower {
    /// Flushes filesystems and powers the VM off; only returns if reboot(2) failed (not PID 1).
    public static func powerOff() {
        sync()
        _ = rund_power_off()
    }

    /// Reports `message` on the console and powers off; exits if that is impossible.
    public static func fail(_ message: String) -> Never {
        let line = "rund-agent: fatal: \(message)\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        powerOff()
        exit(1)
    }
}
