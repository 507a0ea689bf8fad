#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// mount(2)/umount2(2) and the mount table, for loop-mounted images and the XFS pool.
public enum Mount {
    public static func mount(source: String, target: String, type: String, flags: UInt = 0, data: String? = nil) throws {
        _ = try retryingInterrupts("mount", subject: "\(source) on \(target)") {
            Glibc.mount(source, target, type, flags, data)
        }
    }

    public static func unmount(_ target: String, detach: Bool = false) throws {
        _ = try retryingInterrupts("umount", subject: target) { umount2(target, detach ? Int32(MNT_DETACH) : 0) }
    }

    /// Moves the calling thread into a new mount namespace of its own, with every mount private,
    /// so what it mounts is seen by it and the processes it spawns, never by the host, and goes
    /// away with them (a crash leaves no mount behind). Only for a dedicated thread (`OSThread`)
    /// that ends after its work: the Swift concurrency pool must never run in such a namespace.
    public static func enterPrivateNamespaceForCurrentThread() throws {
        _ = try retryingInterrupts("unshare(CLONE_NEWNS)") { rund_unshare_private_mounts() }
    }

    /// True when `path` (an absolute, canonical path) is a mount point in this mount namespace.
    public static func isMountPoint(_ path: String) -> Bool {
        guard let info = try? FileDescriptor.open("/proc/self/mountinfo", O_RDONLY).readToEnd() else { return false }
        let wanted = escape(path)
        for line in String(decoding: info, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 4 && fields[4] == wanted { return true }
        }
        return false
    }

    /// mountinfo escapes space, tab, newline and backslash as octal.
    private static func escape(_ path: String) -> Substring {
        var out = ""
        for character in path {
            switch character {
            case " ": out += "\\040"
            case "\t": out += "\\011"
            case "\n": out += "\\012"
            case "\\": out += "\\134"
            default: out.append(character)
            }
        }
        return Substring(out)
    }
}
