#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Runs external tools (mkfs.erofs, mkfs.xfs, mount helpers) and captures their output.
/// Built on posix_spawn so it works without Foundation (the guest agent shares it).
public enum Subprocess {
    public struct Result: Sendable {
        public let status: Int32
        public let stdout: [UInt8]
        public let stderr: [UInt8]
        public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let argv: [String]
        public let status: Int32
        public let stderr: String
        public var description: String {
            let lastLine = stderr.split(separator: "\n").last.map(String.init) ?? ""
            return "\(argv.first ?? "?") exited with status \(status)" + (lastLine.isEmpty ? "" : ": \(lastLine)")
        }
    }

    /// Runs argv (searched on PATH) to completion. Output is collected through temp files so
    /// a chatty child can never deadlock on a full pipe.
    public static func run(_ argv: [String], environment: [String]? = nil) throws -> Result {
        precondition(!argv.isEmpty)
        let outFile = try anonymousFile()
        let errFile = try anonymousFile()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outFile.rawValue, 1)
        posix_spawn_file_actions_adddup2(&actions, errFile.rawValue, 2)

        let env = environment ?? currentEnvironment()
        var pid: pid_t = 0
        let status = withCStrings(argv) { cArgv in
            withCStrings(env) { cEnv in
                SpawnAttributes.withCleanSignals { attributes in
                    posix_spawnp(&pid, argv[0], &actions, attributes, cArgv, cEnv)
                }
            }
        }
        if status != 0 { throw SystemError("posix_spawn", errno: status, subject: argv[0]) }
        let exit = try wait(pid)
        let out = try readAll(outFile)
        let err = try readAll(errFile)
        return Result(status: exit, stdout: out, stderr: err)
    }

    /// Runs argv and throws `Failure` unless it exits 0.
    @discardableResult
    public static func checked(_ argv: [String], environment: [String]? = nil) throws -> Result {
        let result = try run(argv, environment: environment)
        guard result.status == 0 else {
            throw Failure(argv: argv, status: result.status, stderr: result.stderrText)
        }
        return result
    }

    /// waitpid until exit; returns the exit status, or 128+signal.
    public static func wait(_ pid: pid_t) throws -> Int32 {
        var status: Int32 = 0
        _ = try retryingInterrupts("waitpid") { waitpid(pid, &status, 0) }
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }

    private static func anonymousFile() throws -> FileDescriptor {
        let fd = try retryingInterrupts("memfd_create") { memfd_create("rund-subprocess", UInt32(MFD_CLOEXEC)) }
        return FileDescriptor(adopting: fd)
    }

    private static func readAll(_ fd: FileDescriptor) throws -> [UInt8] {
        _ = lseek(fd.rawValue, 0, SEEK_SET)
        return try fd.readToEnd()
    }

    private static func currentEnvironment() -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            result.append(String(cString: entry))
            pointer += 1
        }
        return result
    }
}

/// Calls body with a NULL-terminated C array of the strings.
public func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
