#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// One filesystem PID 1 mounts at boot.
public struct GuestMount: Sendable, Equatable {
    public var source: String
    public var target: String
    public var type: String
    public var flags: UInt
    public var data: String?

    public init(source: String, target: String, type: String, flags: UInt, data: String?) {
        self.source = source
        self.target = target
        self.type = type
        self.flags = flags
        self.data = data
    }
}

/// What the guest needs mounted before anything else runs. /proc comes first: the Swift runtime
/// reads it to size its thread pool, so it must exist before any concurrency starts.
public enum GuestMounts {
    public static let essential: [GuestMount] = [
        GuestMount(source: "proc", target: "/proc", type: "proc", flags: nosuidNodevNoexec, data: nil),
        GuestMount(source: "sysfs", target: "/sys", type: "sysfs", flags: nosuidNodevNoexec, data: nil),
        GuestMount(source: "devtmpfs", target: "/dev", type: "devtmpfs", flags: UInt(MS_NOSUID), data: "mode=0755"),
        // Pseudo-terminals for processes started with a terminal (devtmpfs has /dev/ptmx only).
        GuestMount(
            source: "devpts", target: "/dev/pts", type: "devpts", flags: UInt(MS_NOSUID | MS_NOEXEC), data: "mode=0620,ptmxmode=0666"),
        GuestMount(source: "tmpfs", target: "/run", type: "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=0755"),
    ]

    static let nosuidNodevNoexec = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)

    /// Mounts `mounts` in order, creating each target; one already mounted is left as it is.
    /// Returns the failures (the caller decides whether they are fatal).
    public static func mountAll(_ mounts: [GuestMount] = essential) -> [String] {
        var failures: [String] = []
        for mount in mounts {
            _ = mkdir(mount.target, 0o755)
            do {
                try Mount.mount(source: mount.source, target: mount.target, type: mount.type, flags: mount.flags, data: mount.data)
            } catch let error as SystemError where error.errno == EBUSY {
                continue
            } catch {
                failures.append("mount \(mount.type) on \(mount.target): \(error)")
            }
        }
        return failures
    }

    /// The kernel opens /dev/console as fds 0-2 only if the initramfs has that node; otherwise
    /// PID 1 starts with none. Opens it (from devtmpfs) so logs reach the console.
    public static func attachConsole() {
        guard fcntl(2, F_GETFD) < 0 else { return }
        for target in Int32(0)...2 where fcntl(target, F_GETFD) < 0 {
            let fd = open("/dev/console", O_RDWR | O_NOCTTY)
            if fd >= 0 && fd != target {
                dup2(fd, target)
                close(fd)
            }
        }
    }
}
