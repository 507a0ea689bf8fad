#if canImport(Glibc)
import Glibc
#endif
import CLinux
import HostOS
import Logging

/// Per-sandbox writable disks: a pre-formatted sparse ext4 template per size, and for each sandbox
/// a FICLONE (reflink) copy that has no name: the returned descriptor is the disk, and its space
/// goes back to the host when the descriptor closes.
///
/// Layers live in `<root>/writable`. When the state root's filesystem cannot reflink, that
/// directory is an XFS pool file (`<root>/writable.xfs`, made with reflink=1) loop-mounted there,
/// and re-mounted by the first user after a reboot.
public final class WritableLayers: Sendable {
    public let root: String
    /// Where templates and instances live (the pool mount point when the pool is used).
    public let directory: String
    let poolFile: String
    let poolSizeGiB: Int
    let logger: Logger

    public static let defaultSizeMiB = 512

    public init(root: String, poolSizeGiB: Int = 64, logger: Logger = Logger(label: "rund.storage")) {
        self.root = root
        directory = root + "/writable"
        poolFile = root + "/writable.xfs"
        self.poolSizeGiB = poolSizeGiB
        self.logger = logger
    }

    /// A new writable layer: a reflink of the template for `sizeMiB`, already unlinked.
    public func make(sizeMiB: Int = defaultSizeMiB) throws -> FileDescriptor {
        let template = try FileDescriptor.open(try templatePath(sizeMiB: sizeMiB), O_RDONLY)
        let layer = try anonymousFile()
        do {
            try FileSystem.reflink(from: template, to: layer)
        } catch let error as SystemError {
            throw StorageError(.hostUnsupported, "cannot reflink a writable layer in \(directory) (\(error.message))")
        }
        return layer
    }

    /// The template for a size, formatted once (ext4, no journal: the disk dies with its sandbox;
    /// inode tables initialised up front so the guest never zeroes them).
    public func templatePath(sizeMiB: Int) throws -> String {
        guard (16...1_048_576).contains(sizeMiB) else {
            throw StorageError(.badInput, "writable layer size \(sizeMiB) MiB is out of range; use 16 MiB to 1 TiB")
        }
        let path = directory + "/templates/ext4-\(sizeMiB)M.img"
        // Fast path: a template is only visible once the pool (if any) is mounted.
        if FileSystem.exists(path) { return path }
        try ensureDirectory()
        let lock = try FileSystem.open(at: nil, directory + "/templates/.lock", O_RDWR | O_CREAT, mode: 0o600)
        _ = try FileSystem.lock(lock)
        if FileSystem.exists(path) { return path }
        let temporary = path + ".tmp-\(getpid())"
        defer { try? FileSystem.unlink(at: nil, temporary) }
        try Self.format(temporary, sizeMiB: sizeMiB)
        try FileDescriptor.open(temporary, O_RDONLY).fsync()
        try FileSystem.rename(at: nil, temporary, to: path)
        logger.info("made writable-layer template \(path)")
        return path
    }

    /// Makes `directory` usable: reflink-capable in place, else the XFS pool mounted on it.
    public func ensureDirectory() throws {
        try FileSystem.makeDirectories(directory, mode: 0o700)
        let lock = try FileSystem.open(at: nil, root + "/writable.lock", O_RDWR | O_CREAT, mode: 0o600)
        _ = try FileSystem.lock(lock)
        if !Mount.isMountPoint(directory) {
            if FileSystem.exists(poolFile) || !Self.canReflink(in: directory) {
                try attachPool()
            }
        }
        for sub in ["templates", "instances"] {
            try FileSystem.makeDirectories(directory + "/" + sub, mode: 0o700)
        }
    }

    /// True when layers live in the XFS pool file.
    public var usesPool: Bool { Mount.isMountPoint(directory) }

    /// Unmounts the pool (its loop device detaches itself). Layers still open keep it busy.
    public func detachPool() throws {
        guard Mount.isMountPoint(directory) else { return }
        // Busy for a moment when another thread of this process is spawning a program: its child
        // holds copies of our descriptors (a layer or template in the pool) until it execs.
        for attempt in 1... {
            do {
                return try Mount.unmount(directory)
            } catch let error as SystemError where error.errno == EBUSY && attempt < 100 {
                usleep(20_000)
            }
        }
    }

    // MARK: Internals

    private func attachPool() throws {
        if !FileSystem.exists(poolFile) {
            let temporary = poolFile + ".tmp-\(getpid())"
            defer { try? FileSystem.unlink(at: nil, temporary) }
            let file = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            try FileSystem.truncate(file, size: Int64(poolSizeGiB) << 30)
            file.close()
            do {
                try Subprocess.checked(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", temporary])
            } catch let error as SystemError where error.errno == ENOENT {
                throw StorageError(.io, "mkfs.xfs not found; install the xfsprogs package")
            }
            try FileSystem.rename(at: nil, temporary, to: poolFile)
            logger.info("made XFS pool \(poolFile) (\(poolSizeGiB) GiB sparse) because \(root) cannot reflink")
        }
        let loop = try LoopDevice.attach(file: poolFile, readOnly: false)
        // The loop device has autoclear set: once our descriptor closes it lives only as long as the mount.
        defer { loop.device.close() }
        do {
            try Mount.mount(source: loop.path, target: directory, type: "xfs", flags: UInt(MS_NOATIME))
        } catch let error as SystemError {
            throw StorageError(.io, "cannot mount the XFS pool \(poolFile) on \(directory): \(error.message)")
        }
        try FileSystem.changeMode(at: try FileSystem.openDirectory(at: nil, "/"), String(directory.dropFirst()), mode: 0o700)
        logger.info("mounted XFS pool \(poolFile) on \(directory) via \(loop.path)")
    }

    /// A file with no name in `instances/` (O_TMPFILE), or created and unlinked at once where
    /// O_TMPFILE is missing.
    func anonymousFile() throws -> FileDescriptor {
        let instances = directory + "/instances"
        do {
            return try FileSystem.open(at: nil, instances, O_RDWR | rund_O_TMPFILE(), mode: 0o600)
        } catch let error as SystemError where error.errno == EOPNOTSUPP || error.errno == EISDIR {
            let path = instances + "/layer-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
            let file = try FileDescriptor.open(path, O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
            try FileSystem.unlink(at: nil, path)
            return file
        }
    }

    static func format(_ path: String, sizeMiB: Int) throws {
        let file = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try FileSystem.truncate(file, size: Int64(sizeMiB) << 20)
        file.close()
        do {
            try Subprocess.checked([
                "mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-m", "0",
                "-E", "lazy_itable_init=0,nodiscard", path,
            ])
        } catch let error as SystemError where error.errno == ENOENT {
            throw StorageError(.io, "mkfs.ext4 not found; install the e2fsprogs package")
        }
    }

    /// Tries a FICLONE between two scratch files in `directory`.
    static func canReflink(in directory: String) -> Bool {
        let path = directory + "/.reflink-probe-\(getpid())"
        defer { try? FileSystem.unlink(at: nil, path) }
        defer { try? FileSystem.unlink(at: nil, path + ".clone") }
        guard let source = try? FileDescriptor.open(path, O_RDWR | O_CREAT | O_TRUNC, mode: 0o600),
            (try? source.writeAll([UInt8](repeating: 1, count: 4096))) != nil,
            let clone = try? FileDescriptor.open(path + ".clone", O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
        else {
            return false
        }
        return (try? FileSystem.reflink(from: source, to: clone)) != nil
    }
}

/// What `rund doctor` reports about writable layers.
public enum WritableLayerBackend {
    /// reflinkOnRoot: the state root's own filesystem can reflink; poolInUse: the XFS pool file
    /// exists or is mounted; summary: one line for humans.
    public static func probe(stateRoot: String) -> (reflinkOnRoot: Bool, poolInUse: Bool, summary: String) {
        let layers = WritableLayers(root: stateRoot)
        let poolMounted = Mount.isMountPoint(layers.directory)
        let poolExists = FileSystem.exists(layers.poolFile)
        var probeDirectory = stateRoot
        while !FileSystem.exists(probeDirectory), let slash = probeDirectory.lastIndex(of: "/"), slash > probeDirectory.startIndex {
            probeDirectory = String(probeDirectory[..<slash])
        }
        let reflink = !poolMounted && WritableLayers.canReflink(in: probeDirectory)
        let summary: String
        if poolMounted {
            summary = "writable layers: reflink in XFS pool \(layers.poolFile) mounted on \(layers.directory)"
        } else if reflink {
            summary = "writable layers: reflink directly in \(stateRoot)"
        } else if poolExists {
            summary = "writable layers: XFS pool \(layers.poolFile) exists, not mounted (mounted on first use)"
        } else {
            summary = "writable layers: \(stateRoot) cannot reflink; an XFS pool file will be made and loop-mounted on first use"
        }
        return (reflink, poolMounted || poolExists, summary)
    }
}
