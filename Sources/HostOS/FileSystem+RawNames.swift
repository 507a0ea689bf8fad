#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// How openat2(2) may resolve a path (`RESOLVE_*`).
public struct ResolveFlags: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// Every component stays beneath the starting directory: absolute paths, ".." above it and
    /// symlinks leading out fail with EXDEV.
    public static let beneath = ResolveFlags(rawValue: rund_RESOLVE_BENEATH())
    /// No symlink anywhere in the path (ELOOP), not only in the last component.
    public static let noSymlinks = ResolveFlags(rawValue: rund_RESOLVE_NO_SYMLINKS())
    /// No /proc-style magic links.
    public static let noMagicLinks = ResolveFlags(rawValue: rund_RESOLVE_NO_MAGICLINKS())
    /// No crossing into another mount.
    public static let noCrossingMounts = ResolveFlags(rawValue: rund_RESOLVE_NO_XDEV())
}

/// Directory-relative calls on names given as raw bytes (see `RawName`): what code that handles
/// names from untrusted sources (image layers) uses, so no name is ever decoded or re-encoded on
/// its way to the kernel. Calls that take a single `name` expect one component; the caller
/// resolves the parent directory first (with `openat2`).
extension FileSystem {
    /// openat2(2) with O_CLOEXEC always added. EAGAIN (a rename raced a ".." walk under
    /// `.beneath`) is retried; ENOSYS means a kernel older than 5.6.
    public static func openat2(
        at directory: FileDescriptor, _ path: [UInt8], _ flags: Int32, mode: mode_t = 0,
        resolve: ResolveFlags
    ) throws -> FileDescriptor {
        let creates = flags & O_CREAT != 0 || flags & rund_O_TMPFILE() == rund_O_TMPFILE()
        let how = (flags: UInt64(UInt32(bitPattern: flags | O_CLOEXEC)), mode: creates ? UInt64(mode) : 0)
        for _ in 0..<64 {
            let fd = try RawName.withCString(path, call: "openat2") { name in
                rund_openat2(directory.rawValue, name, how.flags, how.mode, resolve.rawValue)
            }
            if fd >= 0 { return FileDescriptor(adopting: fd) }
            let code = errno
            if code == EINTR || code == EAGAIN { continue }
            throw SystemError("openat2", errno: code, subject: RawName.printable(path))
        }
        throw SystemError("openat2", errno: EAGAIN, subject: RawName.printable(path))
    }

    public static func makeDirectory(at directory: FileDescriptor, _ name: [UInt8], mode: mode_t) throws {
        try call("mkdirat", name) { mkdirat(directory.rawValue, $0, mode) }
    }

    public static func symlink(at directory: FileDescriptor, _ name: [UInt8], target: [UInt8]) throws {
        try RawName.withCString(target, call: "symlinkat") { cTarget in
            try call("symlinkat", name) { symlinkat(cTarget, directory.rawValue, $0) }
        }
    }

    /// A hard link to an existing entry; a symlink at the source is linked itself, not followed.
    public static func link(
        from sourceDirectory: FileDescriptor, _ sourceName: [UInt8],
        to directory: FileDescriptor, _ name: [UInt8]
    ) throws {
        try RawName.withCString(sourceName, call: "linkat") { cSource in
            try call("linkat", name) { linkat(sourceDirectory.rawValue, cSource, directory.rawValue, $0, 0) }
        }
    }

    public static func makeNode(at directory: FileDescriptor, _ name: [UInt8], mode: mode_t, device: dev_t) throws {
        try call("mknodat", name) { mknodat(directory.rawValue, $0, mode, device) }
    }

    /// Removes a file, symlink or empty directory.
    public static func unlink(at directory: FileDescriptor, _ name: [UInt8], isDirectory: Bool = false) throws {
        try call("unlinkat", name) { Glibc.unlinkat(directory.rawValue, $0, isDirectory ? AT_REMOVEDIR : 0) }
    }

    /// lstat-like: the entry itself, never a symlink's target. Nil when it does not exist.
    public static func status(at directory: FileDescriptor, _ name: [UInt8]) throws -> stat? {
        var st = stat()
        let result = try RawName.withCString(name, call: "fstatat") { fstatat(directory.rawValue, $0, &st, AT_SYMLINK_NOFOLLOW) }
        if result == 0 { return st }
        if errno == ENOENT { return nil }
        throw SystemError.last("fstatat", subject: RawName.printable(name))
    }

    /// Owner of the entry itself (a symlink's own owner, never its target's).
    public static func changeOwner(at directory: FileDescriptor, _ name: [UInt8], uid: uid_t, gid: gid_t) throws {
        try call("fchownat", name) { fchownat(directory.rawValue, $0, uid, gid, AT_SYMLINK_NOFOLLOW) }
    }

    /// Mode of the entry itself; fails (EOPNOTSUPP) rather than follow a symlink.
    public static func changeMode(at directory: FileDescriptor, _ name: [UInt8], mode: mode_t) throws {
        try call("fchmodat", name) { fchmodat(directory.rawValue, $0, mode, AT_SYMLINK_NOFOLLOW) }
    }

    /// Access and modification time (seconds) of the entry itself, not a symlink's target.
    public static func setModificationTime(at directory: FileDescriptor, _ name: [UInt8], seconds: Int) throws {
        var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        try call("utimensat", name) { utimensat(directory.rawValue, $0, &times, AT_SYMLINK_NOFOLLOW) }
    }

    public static func changeOwner(of descriptor: FileDescriptor, uid: uid_t, gid: gid_t) throws {
        _ = try retryingInterrupts("fchown") { fchown(descriptor.rawValue, uid, gid) }
    }

    public static func changeMode(of descriptor: FileDescriptor, mode: mode_t) throws {
        _ = try retryingInterrupts("fchmod") { fchmod(descriptor.rawValue, mode) }
    }

    public static func setModificationTime(of descriptor: FileDescriptor, seconds: Int) throws {
        var times = [timespec(tv_sec: seconds, tv_nsec: 0), timespec(tv_sec: seconds, tv_nsec: 0)]
        _ = try retryingInterrupts("futimens") { futimens(descriptor.rawValue, &times) }
    }

    public static func setExtendedAttribute(on descriptor: FileDescriptor, name: [UInt8], value: [UInt8]) throws {
        _ = try RawName.withCString(name, call: "fsetxattr") { cName in
            try retryingInterrupts("fsetxattr", subject: RawName.printable(name)) {
                value.withUnsafeBytes { fsetxattr(descriptor.rawValue, cName, $0.baseAddress, $0.count, 0) }
            }
        }
    }

    /// Names in a directory as raw bytes, without "." and "..".
    public static func entryNames(of directory: FileDescriptor) throws -> [[UInt8]] {
        let copy = try retryingInterrupts("dup") { Glibc.dup(directory.rawValue) }
        guard let stream = fdopendir(copy) else {
            let error = SystemError.last("fdopendir")
            Glibc.close(copy)
            throw error
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [[UInt8]] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2e] && name != [0x2e, 0x2e] { names.append(name) }
        }
        return names
    }

    /// rm -rf of one entry inside a directory, never following symlinks. Missing is fine.
    public static func removeTree(at directory: FileDescriptor, _ name: [UInt8]) throws {
        guard let st = try status(at: directory, name) else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            let child = try openat2(
                at: directory, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW,
                resolve: [.beneath, .noSymlinks, .noMagicLinks])
            for entry in try entryNames(of: child) { try removeTree(at: child, entry) }
            child.close()
            try unlink(at: directory, name, isDirectory: true)
        } else {
            try unlink(at: directory, name)
        }
    }

    /// One *at call on a byte name: NUL refused, EINTR retried, errors name the entry.
    private static func call(_ name: String, _ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> Int32) throws {
        _ = try RawName.withCString(bytes, call: name) { cName in
            try retryingInterrupts(name, subject: RawName.printable(bytes)) { body(cName) }
        }
    }
}
