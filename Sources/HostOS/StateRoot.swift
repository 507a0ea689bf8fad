#if canImport(Glibc)
import Glibc
#endif

/// Where rund keeps its state: `--root`, else `RUND_ROOT`, else /var/lib/rund.
public enum StateRoot {
    public static let defaultPath = "/var/lib/rund"

    public static func resolve(_ option: String?) -> String {
        if let option, !option.isEmpty { return option }
        if let env = getenv("RUND_ROOT"), env.pointee != 0 { return String(cString: env) }
        return defaultPath
    }
}
