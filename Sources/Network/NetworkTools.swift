#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// iproute2 (`ip`, `tc`) and `iptables`, the tools that make links, filters and NAT rules: run
/// in the caller's network namespace, or in another one (`in:`, a path) from a thread that has
/// entered it (a child inherits its thread's namespace).
public enum NetworkTools {
    /// Runs `argv`; a failure says what it ran and what the tool printed.
    @discardableResult
    static func run(_ argv: [String], in namespace: String? = nil) throws -> String {
        guard let tool = argv.first.flatMap(locate) else {
            throw NetworkError("\(argv.first ?? "") not found in \(directories.joined(separator: ", ")) (iproute2, iptables)")
        }
        let command = [tool] + argv.dropFirst()
        let result: Subprocess.Result
        do {
            if let namespace {
                result = try NetworkNamespace.run(in: namespace) { try Subprocess.run(command) }
            } else {
                result = try Subprocess.run(command)
            }
        } catch {
            throw NetworkError("\(argv.joined(separator: " ")): \(error)")
        }
        guard result.status == 0 else {
            let said = result.stderrText.split(separator: "\n").first.map(String.init) ?? "status \(result.status)"
            throw NetworkError("\(argv.joined(separator: " ")): \(said)")
        }
        return result.stdoutText
    }

    /// Where the tools are looked for, in order: the system directories first, so that a
    /// minimal `ip` (busybox's applet) earlier on PATH is not taken for iproute2's.
    static let directories = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]

    static func locate(_ tool: String) -> String? {
        directories.map { $0 + "/" + tool }.first { access($0, X_OK) == 0 }
    }

    /// Like `run`, for clean-up: a failure is returned (to be logged), not thrown.
    static func attempt(_ argv: [String], in namespace: String? = nil) -> String? {
        do {
            try run(argv, in: namespace)
            return nil
        } catch {
            return "\(error)"
        }
    }
}

/// What went wrong setting up or tearing down a sandbox's network, in its own terms.
public struct NetworkError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}

extension NetworkTools {
    /// What `--network default|netns:` needs of this host and what is missing (for `rund doctor`).
    public static func missingForSandboxNetworks() -> [String] {
        var missing = ["ip", "tc", "iptables"].filter { locate($0) == nil }
        if access("/dev/net/tun", R_OK | W_OK) != 0 { missing.append("/dev/net/tun") }
        return missing
    }
}
