#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS

/// Loads the kernel modules make-guest-initramfs put in the initramfs: `/etc/modules.order`
/// lists paths relative to `/lib/modules`, dependencies first, one per line.
public enum ModuleLoader {
    /// The module paths of a modules.order text, in order: blank lines and `#` comments are
    /// skipped; a path that is absolute or climbs with ".." is rejected.
    public static func parseOrder(_ text: String) throws(ModuleOrderError) -> [String] {
        var paths: [String] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingWhitespace
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard !line.hasPrefix("/"), !line.split(separator: "/").contains("..") else {
                throw ModuleOrderError(line: index + 1, text: String(line))
            }
            paths.append(String(line))
        }
        return paths
    }

    /// Loads each module with finit_module; returns one message per module that failed (a
    /// module already loaded, EEXIST, is not a failure).
    public static func load(orderFile: String = "/etc/modules.order", moduleRoot: String = "/lib/modules") -> [String] {
        guard let text = GuestStats.readText(orderFile) else { return [] }
        let paths: [String]
        do {
            paths = try parseOrder(text)
        } catch {
            return ["\(orderFile): \(error)"]
        }
        var failures: [String] = []
        for path in paths {
            do {
                let module = try FileDescriptor.open(moduleRoot + "/" + path, O_RDONLY | O_CLOEXEC)
                _ = try retryingInterrupts("finit_module", subject: path) { rund_finit_module(module.rawValue) }
            } catch let error as SystemError where error.errno == EEXIST {
                continue
            } catch {
                failures.append("\(error)")
            }
        }
        return failures
    }
}

public struct ModuleOrderError: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var text: String
    public var description: String {
        "line \(line): \"\(text)\" must be a path relative to /lib/modules without '..'"
    }
}

extension Substring {
    var trimmingWhitespace: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }) else { return "" }
        let end = lastIndex(where: { !isSpace($0) })!
        return self[start...end]
    }
}
