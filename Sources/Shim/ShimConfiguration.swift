#if canImport(Glibc)
import Glibc
#endif
import HostOS
import SwiftProtobuf

/// What the shim needs besides the bundle: where rund's state is, the guest agent, and the
/// default sandbox size. Defaults as `rund` finds them (`RUND_ROOT`, else /var/lib/rund; the
/// agent next to the shim's binary); a runtime options file overrides them. containerd names
/// that file in the runtime's options (`ConfigPath`, arriving as `runtimeoptions.v1.Options`);
/// without one, `/etc/rund/shim.toml` is read when it exists.
///
/// The file is a small TOML subset: `key = value` lines, `#` comments, strings in double
/// quotes, integers, floats and booleans:
///
/// ```toml
/// root = "/var/lib/rund"           # rund's state root: kernel cache, image store, layers
/// agent = "/usr/local/bin/rund-agent"
/// memory_mib = 256                 # VM size when config.json has no memory limit
/// vcpus = 1                        # vCPUs when config.json has no CPU quota
/// writable_mib = 256               # each sandbox's writable layer
/// console_dir = "/var/log/rund"    # guest consoles, <sandbox>.log (debugging)
/// stall_timeout = 60               # seconds without guest progress before the VM is ended
/// allow_unconfined = false         # run without a cgroup where none can be had
/// pod_container_slots = 4          # a pod's VM takes this many containers beside its sandbox's
/// pod_overhead_mib = 64            # a pod's VM: its containers' memory sum plus this
/// ```
public struct ShimConfiguration: Sendable, Equatable {
    public var root: String
    public var agent: String
    public var memoryMiB = 256
    public var vcpus = 1
    public var writableMiB = 256
    public var consoleDirectory: String?
    public var stallTimeoutSeconds: Double?
    public var allowUnconfined = false
    public var podContainerSlots = 4
    public var podOverheadMiB = 64

    public static let defaultFile = "/etc/rund/shim.toml"

    public init(root: String, agent: String) {
        self.root = root
        self.agent = agent
    }

    /// Defaults for this process: `RUND_ROOT` (else /var/lib/rund), rund-agent beside the binary.
    public static func defaults() -> ShimConfiguration {
        ShimConfiguration(root: StateRoot.resolve(nil), agent: executableDirectory() + "/rund-agent")
    }

    /// This process's executable (`/proc/self/exe` when it cannot be read).
    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "/proc/self/exe" }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func executableDirectory() -> String {
        let path = executablePath()
        guard path != "/proc/self/exe", let slash = path.lastIndex(of: "/") else { return "/usr/local/bin" }
        return String(path[..<slash])
    }

    /// The configuration for a task: the file its runtime options name, else the default file
    /// if there is one, over the defaults.
    public static func load(options: Google_Protobuf_Any?) throws -> ShimConfiguration {
        var configuration = defaults()
        if let path = try configPath(options: options) {
            try configuration.apply(file: path)
        } else if FileSystem.exists(defaultFile) {
            try configuration.apply(file: defaultFile)
        }
        return configuration
    }

    /// `runtimeoptions.v1.Options.config_path` from containerd's options, if given. Options of
    /// another type (runc's) are refused: they would be silently ignored otherwise.
    static func configPath(options: Google_Protobuf_Any?) throws -> String? {
        guard let options, !options.typeURL.isEmpty || !options.value.isEmpty else { return nil }
        let name = options.typeURL.split(separator: "/").last.map(String.init) ?? ""
        guard name == "runtimeoptions.v1.Options" else {
            throw ShimError(
                .invalidArgument,
                "runtime options of type \(options.typeURL.prefix(100)) are not rund's: use ConfigPath (runtimeoptions.v1.Options)")
        }
        let decoded: Runtimeoptions_V1_Options
        do {
            decoded = try Runtimeoptions_V1_Options(serializedBytes: [UInt8](options.value))
        } catch {
            throw ShimError(.invalidArgument, "runtime options do not decode: \(error)")
        }
        return decoded.configPath.isEmpty ? nil : decoded.configPath
    }

    mutating func apply(file path: String) throws {
        let bytes: [UInt8]
        do {
            bytes = try FileDescriptor.open(path, O_RDONLY).readToEnd(limit: 1 << 20)
        } catch {
            throw ShimError(.failedPrecondition, "cannot read rund's runtime options file: \(error)")
        }
        try apply(text: String(decoding: bytes, as: UTF8.self), file: path)
    }

    mutating func apply(text: String, file: String) throws {
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = Self.stripComment(rawLine).trimmingSpaces
            if line.isEmpty { continue }
            func fail(_ why: String) -> ShimError { ShimError(.invalidArgument, "\(file):\(number + 1): \(why)") }
            guard let equals = line.firstIndex(of: "=") else { throw fail("expected key = value") }
            let key = String(line[..<equals]).trimmingSpaces
            let value = String(line[line.index(after: equals)...]).trimmingSpaces
            func string() throws -> String {
                guard value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\""), !value.dropFirst().dropLast().contains("\"") else {
                    throw fail("\(key) must be a string in double quotes")
                }
                return String(value.dropFirst().dropLast())
            }
            func integer(_ range: ClosedRange<Int>) throws -> Int {
                guard let number = Int(value), range.contains(number) else { throw fail("\(key) must be an integer in \(range)") }
                return number
            }
            switch key {
            case "root": root = try string()
            case "agent": agent = try string()
            case "memory_mib": memoryMiB = try integer(BundleSpec.minimumMemoryMiB...1_048_576)
            case "vcpus": vcpus = try integer(1...32)
            case "writable_mib": writableMiB = try integer(16...1_048_576)
            case "console_dir": consoleDirectory = try string()
            case "stall_timeout":
                guard let seconds = Double(value), (2...86400).contains(seconds) else {
                    throw fail("stall_timeout must be 2 to 86400 seconds")
                }
                stallTimeoutSeconds = seconds
            case "pod_container_slots": podContainerSlots = try integer(0...7)
            case "pod_overhead_mib": podOverheadMiB = try integer(BundleSpec.minimumMemoryMiB...65_536)
            case "allow_unconfined":
                guard let flag = Bool(value) else { throw fail("allow_unconfined must be true or false") }
                allowUnconfined = flag
            default:
                throw fail("unknown key \(key.prefix(60))")
            }
        }
    }

    /// A line without its `#` comment (a `#` inside a quoted string stays).
    static func stripComment(_ line: Substring) -> Substring {
        var quoted = false
        for index in line.indices {
            if line[index] == "\"" { quoted.toggle() }
            if line[index] == "#" && !quoted { return line[..<index] }
        }
        return line
    }
}

extension StringProtocol {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}
