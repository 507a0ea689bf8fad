#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Directory-relative file operations (the *at calls), wrapped once so that code which must not
/// follow symlinks (layer extraction, the image store) can say so explicitly everywhere.
public enum FileSystem {
    /// openat(2) with O_CLOEXEC always added.
    public static func open(at directory: FileDescriptor?, _ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        let dirfd = directory?.rawValue ?? AT_FDCWD
        let fd = try retryingInterrupts("openat", subject: path) {
            rund_openat(dirfd, path, flags | O_CLOEXEC, UInt32(mode))
        }
        return FileDescriptor(adopting: fd)
    }

    /// Opens a directory without following a symlink in its last component.
    public static func openDirectory(at directory: FileDescriptor?, _ name: String) throws -> FileDescriptor {
        try open(at: directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
    }

    public static func makeDirectory(at directory: FileDescriptor?, _ name: String, mode: mode_t = 0o755) throws {
        _ = try retryingInterrupts("mkdirat", subject: name) { mkdirat(directory?.rawValue ?? AT_FDCWD, name, mode) }
    }

    /// mkdir -p: creates every missing directory of an absolute or relative path.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw SystemError.last("mkdir", subject: current)
            }
        }
    }

    public static func symlink(at directory: FileDescriptor, _ name: String, target: String) throws {
        _ = try retryingInterrupts("symlinkat", subject: name) { symlinkat(target, directory.rawValue, name) }
    }

    /// A hard link to an existing entry; never follows a symlink at the source.
    public static func link(
        from sourceDirectory: FileDescriptor, _ sourceName: String,
        to directory: FileDescriptor, _ name: String
    ) throws {
        _ = try retryingInterrupts("linkat", subject: name) {
            linkat(sourceDirectory.rawValue, sourceName, directory.rawValue, name, 0)
        }
    }

    /// makedev(3), a macro Swift cannot see.
    public static func deviceNumber(major: UInt32, minor: UInt32) -> dev_t {
        let major = dev_t(major), minor = dev_t(minor)
        return (major & 0xfff) << 8 | (major & ~0xfff) << 32 | (minor & 0xff) | (minor & ~0xff) << 12
    }

    public static func makeNode(at directory: FileDescriptor, _ name: String, mode: mode_t, device: dev_t) throws {
        _ = try retryingInterrupts("mknodat", subject: name) { mknodat(directory.rawValue, name, mode, device) }
    }

    /// Removes a file, symlink or empty directory.
    public static func unlink(at directory: FileDescriptor?, _ name: String, isDirectory: Bool = false) throws {
        _ = try retryingInterrupts("unlinkat", subject: name) {
            Glibc.unlinkat(directory?.rawValue ?? AT_FDCWD, name, isDirectory ? AT_REMOVEDIR : 0)
        }
    }

    public static func rename(at directory: FileDescriptor?, _ from: String, to: String) throws {
        let dirfd = directory?.rawValue ?? AT_FDCWD
        _ = try retryingInterrupts("renameat", subject: from) { renameat(dirfd, from, dirfd, to) }
    }

    /// Renames `from` to `to` only if `to` does not exist (EEXIST otherwise): renameat2 with
    /// RENAME_NOREPLACE, so two processes racing for one name cannot both win.
    public static func rename(at directory: FileDescriptor?, _ from: String, toNew to: String) throws {
        let dirfd = directory?.rawValue ?? AT_FDCWD
        _ = try retryingInterrupts("renameat2", subject: to) { rund_renameat2(dirfd, from, dirfd, to, rund_RENAME_NOREPLACE()) }
    }

    /// lstat-like: the entry itself, never a symlink's target. Nil when it does not exist.
    public static func status(at directory: FileDescriptor?, _ name: String) throws -> stat? {
        var st = stat()
        if fstatat(directory?.rawValue ?? AT_FDCWD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
        if errno == ENOENT { return nil }
        throw SystemError.last("fstatat", subject: name)
    }

    public static func status(of descriptor: FileDescriptor) throws -> stat {
        var st = stat()
        _ = try retryingInterrupts("fstat") { fstat(descriptor.rawValue, &st) }
        return st
    }

    public static func exists(_ path: String) -> Bool {
        (try? status(at: nil, path)) != nil
    }

    public static func changeOwner(at directory: FileDescriptor, _ name: String, uid: uid_t, gid: gid_t) throws {
        _ = try retryingInterrupts("fchownat", subject: name) {
            fchownat(directory.rawValue, name, uid, gid, AT_SYMLINK_NOFOLLOW)
        }
    }

    public static func changeMode(at directory: FileDescriptor, _ name: String, mode: mode_t) throws {
        _ = try retryingInterrupts("fchmodat", subject: name) { fchmodat(directory.rawValue, name, mode, 0) }
    }

    /// Sets access and modification time (seconds) of the entry itself, not a symlink's target.
    public static func setModificationTime(at directory: FileDescriptor, _ name: String, seconds: Int) throws {
        var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        _ = try retryingInterrupts("utimensat", subject: name) {
            utimensat(directory.rawValue, name, &times, AT_SYMLINK_NOFOLLOW)
        }
    }

    public static func setExtendedAttribute(on descriptor: FileDescriptor, name: String, value: [UInt8]) throws {
        _ = try retryingInterrupts("fsetxattr", subject: name) {
            value.withUnsafeBytes { fsetxattr(descriptor.rawValue, name, $0.baseAddress, $0.count, 0) }
        }
    }

    /// The value of an xattr of the entry itself (not a symlink's target); nil when absent.
    public static func extendedAttribute(_ path: String, name: String) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { lgetxattr(path, name, $0.baseAddress, $0.count) }
        return n < 0 ? nil : Array(buffer[0..<n])
    }

    public static func truncate(_ descriptor: FileDescriptor, size: Int64) throws {
        _ = try retryingInterrupts("ftruncate") { ftruncate(descriptor.rawValue, off_t(size)) }
    }

    /// Names in a directory, without "." and "..".
    public static func entries(of directory: FileDescriptor) throws -> [String] {
        let dup = try retryingInterrupts("dup") { Glibc.dup(directory.rawValue) }
        guard let stream = fdopendir(dup) else {
            let error = SystemError.last("fdopendir")
            Glibc.close(dup)
            throw error
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// rm -rf of one entry inside a directory, never following symlinks. Missing is fine.
    /// Works on raw names underneath, so entries whose names are not UTF-8 go too.
    public static func removeTree(at directory: FileDescriptor, _ name: String) throws {
        try removeTree(at: directory, Array(name.utf8))
    }

    /// rm -rf of a path. Missing is fine.
    public static func removeTree(_ path: String) throws {
        let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let name = String(path.split(separator: "/").last ?? "")
        let directory = try openDirectory(at: nil, parent.isEmpty ? (path.hasPrefix("/") ? "/" : ".") : parent)
        try removeTree(at: directory, name)
    }

    /// Takes an flock(2) on the file; released when the descriptor closes.
    public static func lock(_ descriptor: FileDescriptor, exclusive: Bool = true, wait: Bool = true) throws -> Bool {
        let operation = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)
        while flock(descriptor.rawValue, operation) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK && !wait { return false }
            throw SystemError.last("flock")
        }
        return true
    }

    /// Clones `source` into `destination` sharing extents (FICLONE); fails with EOPNOTSUPP/EXDEV
    /// when the filesystem cannot.
    public static func reflink(from source: FileDescriptor, to destination: FileDescriptor) throws {
        try destination.ioctl("ioctl(FICLONE)", rund_FICLONE(), value: UInt(source.rawValue))
    }

    /// Bytes actually allocated to a file (st_blocks * 512).
    public static func allocatedBytes(_ descriptor: FileDescriptor) throws -> Int64 {
        Int64(try status(of: descriptor).st_blocks) * 512
    }

    /// Free bytes on the filesystem holding the descriptor.
    public static func freeBytes(_ descriptor: FileDescriptor) throws -> Int64 {
        var info = statfs()
        _ = try retryingInterrupts("fstatfs") { fstatfs(descriptor.rawValue, &info) }
        return Int64(info.f_bavail) * Int64(info.f_bsize)
    }

    /// The filesystem magic number (statfs f_type) of the filesystem holding path.
    public static func filesystemType(_ path: String) throws -> Int64 {
        var info = statfs()
        _ = try retryingInterrupts("statfs", subject: path) { statfs(path, &info) }
        return Int64(info.f_type)
    }
}
