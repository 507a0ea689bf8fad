#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Logging

/// EROFS images of containerd snapshots: containerd's overlayfs snapshotter hands a container
/// its image as a chain of read-only lower directories (one per layer, already unpacked). The
/// chain becomes one EROFS, built once and shared by every sandbox that runs it, as an image in
/// the store is (RunD's read-only half of the rootfs); each sandbox still gets its own writable
/// layer.
///
/// ```
/// <root>/layer-chains/<key>/rootfs.erofs   the merged layers
/// <root>/layer-chains/<key>/lowers         the lower directories it was made of, one a line
/// <root>/layer-chains/tmp/                 staging (flocked while in use; a crash leaves only this)
/// <root>/layer-chains/locks/<key>.lock     one builder per chain
/// ```
///
/// The key is the SHA-256 of each lower's path and identity (device, inode, change time): a
/// committed snapshot never changes, and a snapshot removed and made again at the same path
/// (a reset containerd root) is a new directory, so it gets a new key. The layers are merged
/// by overlayfs itself (whiteouts and opaque directories as the container would see them),
/// mounted read-only in a mount namespace private to the building thread, so no mount is
/// visible on the host or outlives the build.
public struct LayerChainImages: Sendable {
    public let root: String
    let directory: String
    let logger: Logger

    public init(root: String, logger: Logger = Logger(label: "rund.storage")) {
        self.root = root
        directory = root + "/layer-chains"
        self.logger = logger
    }

    /// Lower directories, top-most first (overlayfs's `lowerdir` order), at most this many.
    public static let maximumLayers = 128

    /// The EROFS of `lowers` (top-most first), made on first use. Returns its path.
    public func image(lowers: [String]) throws -> String {
        try Self.check(lowers)
        let key = try Self.key(lowers)
        let path = directory + "/" + key + "/rootfs.erofs"
        if FileSystem.exists(path) { return path }
        for sub in ["", "/tmp", "/locks"] { try FileSystem.makeDirectories(directory + sub, mode: 0o700) }
        let lock = try FileSystem.open(at: nil, directory + "/locks/" + key + ".lock", O_RDWR | O_CREAT, mode: 0o600)
        defer { lock.close() }
        _ = try FileSystem.lock(lock)
        if FileSystem.exists(path) { return path }
        removeStaleStaging()

        let staging = try makeStaging()
        defer {
            try? FileSystem.removeTree(staging.path)
            staging.lock.close()
        }
        let built = staging.path + "/" + key
        try FileSystem.makeDirectories(built + "/merged", mode: 0o700)
        try FileSystem.makeDirectories(built + "/empty", mode: 0o700)
        try Self.build(lowers: lowers, merged: built + "/merged", empty: built + "/empty", output: built + "/rootfs.erofs")
        try FileSystem.removeTree(built + "/merged")
        try FileSystem.removeTree(built + "/empty")
        let list = try FileDescriptor.open(built + "/lowers", O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
        try list.writeAll(lowers.joined(separator: "\n") + "\n")
        try list.fsync()
        list.close()
        try FileDescriptor.open(built + "/rootfs.erofs", O_RDONLY).fsync()
        try FileSystem.rename(at: nil, built, to: directory + "/" + key)
        logger.info("made the EROFS of a containerd layer chain", metadata: ["layers": "\(lowers.count)", "key": "\(key)"])
        return path
    }

    /// Lower directories must be absolute paths overlayfs can take as they are (no `:` or `,`,
    /// which separate its options; no control characters) and existing directories.
    static func check(_ lowers: [String]) throws {
        guard !lowers.isEmpty else { throw StorageError(.badInput, "the snapshot has no lower directories") }
        guard lowers.count <= maximumLayers else {
            throw StorageError(.badInput, "the snapshot has \(lowers.count) layers, more than the \(maximumLayers) supported")
        }
        for lower in lowers {
            let bytes = Array(lower.utf8)
            guard bytes.first == UInt8(ascii: "/"), bytes.count < 4096,
                !bytes.contains(where: { $0 < 0x20 || $0 == 0x7f || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ",") }),
                !lower.split(separator: "/").contains("..")
            else {
                throw StorageError(.badInput, "lower directory \"\(lower.prefix(200))\" is not an absolute path overlayfs can take")
            }
        }
    }

    /// SHA-256 over each lower's path, device, inode and change time, in order.
    static func key(_ lowers: [String]) throws -> String {
        var hash = SHA256()
        for lower in lowers {
            let found: stat?
            do {
                found = try FileSystem.status(at: nil, lower)
            } catch {
                throw StorageError(.notFound, "lower directory \(lower) of the snapshot: \(error)")
            }
            guard let status = found else { throw StorageError(.notFound, "lower directory \(lower) of the snapshot does not exist") }
            guard status.st_mode & S_IFMT == S_IFDIR else {
                throw StorageError(.badInput, "lower \(lower) of the snapshot is not a directory")
            }
            hash.update(Array("\(lower)\0\(status.st_dev)\0\(status.st_ino)\0\(status.st_ctim.tv_sec).\(status.st_ctim.tv_nsec)\n".utf8))
        }
        return hash.finalizeHex()
    }

    /// Mounts the chain read-only (overlayfs, in a mount namespace of a thread of its own) and
    /// packs what it shows into `output`.
    static func build(lowers: [String], merged: String, empty: String, output: String) throws {
        // overlayfs wants two lowers when it has no upper: a lone layer gets an empty one below.
        let stack = (lowers.count == 1 ? lowers + [empty] : lowers).joined(separator: ":")
        let failure = ResultBox()
        let worker = try OSThread.spawn(name: "layer-chain") {
            do {
                try Mount.enterPrivateNamespaceForCurrentThread()
                do {
                    try Mount.mount(
                        source: "overlay", target: merged, type: "overlay", flags: UInt(MS_RDONLY),
                        data: "lowerdir=\(stack)")
                } catch let error as SystemError {
                    throw StorageError(.io, "cannot mount the snapshot's layers (overlay lowerdir=\(stack)): \(error.message)")
                }
                try EROFSBuilder.build(tree: merged, output: output)
                try Mount.unmount(merged, detach: true)
            } catch {
                failure.set(error)
            }
        }
        worker.join()
        if let error = failure.error { throw error }
    }

    /// Removes chain images whose lower directories are all gone (the snapshots were removed),
    /// and staging that crashed builds left. Sandboxes still running one keep reading it (they
    /// hold it open). Returns the paths removed (with `dryRun`, that would be).
    @discardableResult
    public func collectGarbage(dryRun: Bool = false) -> [String] {
        var removed = removeStaleStaging(dryRun: dryRun)
        guard let entries = try? FileSystem.entries(of: FileSystem.openDirectory(at: nil, directory)) else { return removed }
        for name in entries where name.count == 64 && name.allSatisfy(\.isHexDigit) {
            let path = directory + "/" + name
            guard let list = try? FileDescriptor.open(path + "/lowers", O_RDONLY).readToEnd(limit: 1 << 20) else { continue }
            let lowers = String(decoding: list, as: UTF8.self).split(separator: "\n").map(String.init)
            guard !lowers.isEmpty, lowers.allSatisfy({ !FileSystem.exists($0) }) else { continue }
            if dryRun { removed.append(path); continue }
            do {
                try FileSystem.rename(at: nil, path, to: directory + "/tmp/removed-" + name)
                try FileSystem.removeTree(directory + "/tmp/removed-" + name)
                removed.append(path)
            } catch {
                logger.warning("cannot remove stale layer-chain image \(path): \(error)")
            }
        }
        return removed
    }

    // MARK: staging

    struct Staging {
        let path: String
        let lock: FileDescriptor
    }

    func makeStaging() throws -> Staging {
        var template = Array((directory + "/tmp/stage-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemError.last("mkdtemp", subject: directory + "/tmp")
        }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let lock = try FileSystem.open(at: nil, path + "/.in-use", O_RDWR | O_CREAT, mode: 0o600)
        _ = try FileSystem.lock(lock)
        return Staging(path: path, lock: lock)
    }

    /// Staging directories whose builder is gone (their lock is free), and removals a crash cut short.
    @discardableResult
    func removeStaleStaging(dryRun: Bool = false) -> [String] {
        guard let names = try? FileSystem.entries(of: FileSystem.openDirectory(at: nil, directory + "/tmp")) else { return [] }
        var removed: [String] = []
        for name in names {
            let path = directory + "/tmp/" + name
            if name.hasPrefix("stage-") {
                if let lock = try? FileDescriptor.open(path + "/.in-use", O_RDWR) {
                    guard (try? FileSystem.lock(lock, wait: false)) == true else { continue }
                } else {
                    // No lock file: just made by a builder still at work, or one killed before
                    // it made the file (then the directory is old).
                    let now = Int(time(nil))
                    let young = (try? FileSystem.status(at: nil, path)).flatMap { $0 }.map { now - Int($0.st_ctim.tv_sec) < 60 } ?? true
                    if young { continue }
                }
            } else if !name.hasPrefix("removed-") {
                continue
            }
            if dryRun { removed.append(path); continue }
            if (try? FileSystem.removeTree(path)) != nil { removed.append(path) }
        }
        return removed
    }
}

/// The first error a worker thread met, handed back to the thread that joins it.
private final class ResultBox: @unchecked Sendable {
    private(set) var error: Error?
    /// Called at most once, by the worker, before the join that reads it.
    func set(_ error: Error) { self.error = error }
}
