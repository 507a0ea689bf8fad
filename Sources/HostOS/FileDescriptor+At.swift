#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Directory-relative calls (`openat`, `mkdirat`, `renameat`, ...): a held directory descriptor
/// saves a path walk per call, which matters on hot paths such as the cgroup pool.
extension FileDescriptor {
    /// Opens a directory to use as the base of the `*at` calls.
    public static func openDirectory(_ path: String) throws -> FileDescriptor {
        try open(path, O_RDONLY | O_DIRECTORY)
    }

    /// openat(2) relative to this directory, O_CLOEXEC always added.
    public func openAt(_ name: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        let fd = try retryingInterrupts("openat", subject: name) {
            rund_openat(rawValue, name, flags | O_CLOEXEC, UInt32(mode))
        }
        return FileDescriptor(adopting: fd)
    }

    public func makeDirectoryAt(_ name: String, mode: mode_t = 0o755) throws {
        _ = try retryingInterrupts("mkdirat", subject: name) { mkdirat(rawValue, name, mode) }
    }

    public func removeDirectoryAt(_ name: String) throws {
        _ = try retryingInterrupts("rmdir", subject: name) { unlinkat(rawValue, name, AT_REMOVEDIR) }
    }

    /// renameat(2) from a name in this directory to a name in `target` (often this directory).
    public func renameAt(_ name: String, to newName: String, in target: FileDescriptor? = nil) throws {
        let targetFD = target?.rawValue ?? rawValue
        _ = try retryingInterrupts("rename", subject: "\(name) -> \(newName)") {
            renameat(rawValue, name, targetFD, newName)
        }
    }

    public func existsAt(_ name: String) -> Bool {
        faccessat(rawValue, name, F_OK, 0) == 0
    }

    /// Names in this directory (not "." or ".."), read through a duplicate so this descriptor's
    /// offset is untouched.
    public func directoryEntries() throws -> [String] {
        try FileSystem.entryNames(of: self).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Writes a small control value (sysfs, cgroupfs, procfs) in one write at offset 0.
    public func writeValue(_ value: String) throws {
        let bytes = Array(value.utf8)
        let written = try bytes.withUnsafeBytes { raw in
            try retryingInterrupts("write", subject: value) { Glibc.pwrite(rawValue, raw.baseAddress, raw.count, 0) }
        }
        if written != bytes.count { throw SystemError("write", errno: EIO, subject: "short write of \(value)") }
    }

    /// Reads a small control file from offset 0 (pread, so a held descriptor can be re-read).
    public func readValue(capacity: Int = 4096) throws -> String {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: capacity)
        var offset: Int64 = 0
        while true {
            let n = try buffer.withUnsafeMutableBytes { raw in try pread(into: raw, at: offset) }
            if n == 0 { break }
            result.append(contentsOf: buffer[0..<n])
            offset += Int64(n)
        }
        return String(decoding: result, as: UTF8.self)
    }
}
