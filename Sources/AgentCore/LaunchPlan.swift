#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import TTRPC

/// A validated `ProcessSpec`: everything the spawn needs, checked before anything starts, so a
/// bad request gets one clear INVALID_ARGUMENT / NOT_FOUND and changes nothing.
public struct LaunchPlan: Sendable, Equatable {
    public struct Limit: Sendable, Equatable {
        public var resource: Int32
        public var soft: UInt64
        public var hard: UInt64
    }

    /// Absolute path of the executable (args[0] resolved on PATH).
    public var executable: String
    public var arguments: [String]
    public var environment: [String]
    public var workingDirectory: String
    public var uid: UInt32
    public var gid: UInt32
    public var additionalGIDs: [UInt32]
    public var limits: [Limit]
    public var opensStdin: Bool
    /// Set when the process gets a pseudo-terminal (stdout and stderr merged onto it).
    public var terminal: TerminalSize?

    /// Used when the spec's environment has no PATH (the OCI runtime default).
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// Checks `spec`; `isExecutable` decides PATH lookups (a parameter so tests need no files).
    public init(_ spec: AgentProcessSpec, isExecutable: (String) -> Bool = LaunchPlan.isExecutableFile) throws(TTRPCStatus) {
        guard let program = spec.args.first, !program.isEmpty else {
            throw TTRPCStatus(.invalidArgument, "process args must not be empty: give at least the program to run")
        }
        for entry in spec.env where !entry.contains("=") || entry.hasPrefix("=") {
            throw TTRPCStatus(.invalidArgument, "environment entry \"\(entry)\" is not KEY=VALUE")
        }
        for text in spec.args + spec.env + [spec.cwd] where text.utf8.contains(0) {
            throw TTRPCStatus(.invalidArgument, "process args, env and cwd must not contain NUL bytes")
        }
        let cwd = spec.cwd.isEmpty ? "/" : spec.cwd
        guard cwd.hasPrefix("/") else {
            throw TTRPCStatus(.invalidArgument, "cwd \"\(cwd)\" must be an absolute path")
        }
        executable = try Self.resolve(program, path: Self.pathVariable(in: spec.env), isExecutable: isExecutable)
        arguments = spec.args
        environment = spec.env
        workingDirectory = cwd
        uid = spec.user.uid
        gid = spec.user.gid
        additionalGIDs = spec.user.additionalGids
        limits = try spec.rlimits.map { limit throws(TTRPCStatus) -> Limit in
            guard let resource = Self.resourceNumbers[limit.type] else {
                throw TTRPCStatus(.invalidArgument, "unknown rlimit \"\(limit.type)\": use an OCI name such as RLIMIT_NOFILE")
            }
            guard limit.soft <= limit.hard else {
                throw TTRPCStatus(.invalidArgument, "\(limit.type): soft limit \(limit.soft) is above the hard limit \(limit.hard)")
            }
            return Limit(resource: resource, soft: limit.soft, hard: limit.hard)
        }
        opensStdin = spec.openStdin
        terminal = spec.hasTerminal ? try TerminalSize(spec.terminal.size) : nil
    }

    /// The last PATH=… entry wins, as in execvpe; absent means `defaultPath`.
    static func pathVariable(in environment: [String]) -> String {
        environment.last { $0.hasPrefix("PATH=") }.map { String($0.dropFirst(5)) } ?? defaultPath
    }

    /// A name with a slash is used as is; otherwise the first executable match on `path`.
    static func resolve(_ program: String, path: String, isExecutable: (String) -> Bool) throws(TTRPCStatus) -> String {
        if program.contains("/") {
            guard isExecutable(program) else {
                throw TTRPCStatus(.notFound, "\(program) is not an executable file in the guest")
            }
            return program
        }
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + program
            if isExecutable(candidate) { return candidate }
        }
        throw TTRPCStatus(.notFound, "\(program) was not found on PATH \(path) in the guest")
    }

    public static func isExecutableFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG && access(path, X_OK) == 0
    }

    /// OCI rlimit names and their setrlimit(2) numbers.
    static let resourceNumbers: [String: Int32] = [
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
        "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
        "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
        "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    ]
}

/// A terminal window size as TIOCSWINSZ takes it.
public struct TerminalSize: Sendable, Equatable {
    public var rows: UInt16
    public var columns: UInt16
    public var width: UInt16
    public var height: UInt16

    public init(_ size: AgentWindowSize) throws(TTRPCStatus) {
        let values = [size.rows, size.columns, size.widthPixels, size.heightPixels]
        guard values.allSatisfy({ $0 <= UInt32(UInt16.max) }) else {
            throw TTRPCStatus(.invalidArgument, "window size values must be at most 65535, got \(values)")
        }
        rows = UInt16(values[0])
        columns = UInt16(values[1])
        width = UInt16(values[2])
        height = UInt16(values[3])
    }
}
