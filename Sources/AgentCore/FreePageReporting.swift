#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// Free page reporting (the balloon's VIRTIO_BALLOON_F_REPORTING) hands the host runs of free
/// pages of at least 2^order pages. Linux starts at the pageblock's order (9: runs of 2 MiB),
/// which misses what an idle guest has free in smaller runs; order 5 (128 KiB runs, Linux's own
/// choice where pageblocks are large) reports nearly all of it, for a report every few seconds
/// of busy freeing. Set once at boot, after the balloon's driver registered (which sets the
/// kernel's default).
public enum FreePageReporting {
    public static let order = 5
    public static let parameter = "/sys/module/page_reporting/parameters/page_reporting_order"

    /// Sets the order. Returns why it could not, or nil (also when the kernel has no page
    /// reporting at all: nothing to tune).
    public static func configure(parameter: String = parameter) -> String? {
        do {
            let file = try FileDescriptor.open(parameter, O_WRONLY | O_CLOEXEC)
            defer { file.close() }
            try file.writeAll("\(order)\n")
            return nil
        } catch let error as SystemError where error.errno == ENOENT {
            return nil
        } catch {
            return "\(parameter): \(error)"
        }
    }
}
