#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HostOS
import Logging

/// The content-addressed image store under `<state root>/images`:
///
///     images/<config hex>/rootfs.erofs   one EROFS per image, built once
///     images/<config hex>/image.json     the StoredImage record
///     images/references.json             name -> image id
///     images/tmp/                        staging; a crash leaves only this behind
///     images/locks/                      flock files: one builder per image, one writer of names
///
/// Every change is staged under tmp/ and renamed into place, so the store is always either
/// as it was or fully updated.
public final class ImageStore: Sendable {
    public let root: String
    let imagesDirectory: String
    let logger: Logger
    /// Bounds on what an image or a registry may make the store read, unpack and write.
    public let limits: StorageLimits

    public init(root: String, logger: Logger = Logger(label: "rund.storage"), limits: StorageLimits = StorageLimits()) {
        self.root = root
        imagesDirectory = root + "/images"
        self.logger = logger
        self.limits = limits
    }

    // MARK: Public operations

    /// Imports an OCI image-layout tarball or a `docker save` archive (either may be gzipped).
    /// `reference` names it in addition to any names the archive carries.
    @discardableResult
    public func `import`(path: String, reference: String? = nil) throws -> StoredImage {
        try prepare()
        let staging = try makeStaging()
        defer { removeStaging(staging) }
        try FileSystem.makeDirectory(at: nil, staging.path + "/archive", mode: 0o700)
        var resolved = try ImageArchive(unpacking: path, into: staging.path + "/archive", limits: limits).resolve()
        if let reference { resolved.references.append(try ImageReference(parsing: reference).description) }
        return try withImageLock(resolved.id) {
            if let existing = try? record(resolved.id) {
                try addReferences(resolved.references, to: existing.id)
                return try lookup(reference: existing.id)
            }
            return try build(resolved, staging: staging.path)
        }
    }

    /// Pulls from a registry (v2 API). `insecure` allows plain HTTP.
    @discardableResult
    public func pull(
        reference: String, insecure: Bool = false, timeout: Double = 60,
        progress: (@Sendable (String) -> Void)? = nil
    ) async throws -> StoredImage {
        let parsed = try ImageReference(parsing: reference)
        let client = RegistryClient(reference: parsed, insecure: insecure, timeout: timeout, limits: limits, logger: logger)
        let target = try await client.resolveManifest()
        try prepare()
        let names = parsed.digest == nil ? [parsed.description] : []
        // The lock is taken before downloading: a second puller of the same image waits here
        // and then finds it built.
        let lock = try imageLock(target.manifest.config.digest)
        if let existing = try? record(target.manifest.config.digest) {
            try addReferences(names, to: existing.id)
            lock.close()
            return try lookup(reference: existing.id)
        }
        let staging = try makeStaging()
        defer {
            removeStaging(staging)
            lock.close()
        }
        let resolved = try await client.download(target, into: staging.path, references: names, progress: progress)
        return try build(resolved, staging: staging.path)
    }

    /// Every stored image, newest first.
    public func list() throws -> [StoredImage] {
        guard let directory = try? FileSystem.openDirectory(at: nil, imagesDirectory) else { return [] }
        var images: [StoredImage] = []
        for name in try FileSystem.entries(of: directory) where Digest.isValid("sha256:" + name) {
            if let image = try? record("sha256:" + name) { images.append(image) }
        }
        let names = try readReferences()
        for index in images.indices {
            images[index].references = names.filter { $0.value == images[index].id }.map(\.key).sorted()
        }
        return images.sorted { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
    }

    /// Finds an image by name (`busybox`, `registry:5000/app:1`), id (`sha256:...`) or id prefix.
    public func lookup(reference: String) throws -> StoredImage {
        let id = try resolveID(reference)
        var image = try record(id)
        image.references = try readReferences().filter { $0.value == id }.map(\.key).sorted()
        return image
    }

    /// Removes a name; the image goes when no name is left. Given an id, removes the image and
    /// all its names. Returns the ids of images deleted.
    @discardableResult
    public func remove(reference: String) throws -> [String] {
        let id = try resolveID(reference)
        let name = try? ImageReference(parsing: reference).description
        let names = try readReferences()
        let byID = name.map { names[$0] == nil } ?? true
        return try withImageLock(id) {
            var remaining: [String] = []
            try updateReferences { names in
                if byID {
                    names = names.filter { $0.value != id }
                } else if let name {
                    names[name] = nil
                }
                remaining = names.filter { $0.value == id }.map(\.key)
            }
            guard remaining.isEmpty else { return [] }
            let doomed = imagesDirectory + "/tmp/removed-" + Digest.hex(id) + "-\(getpid())"
            try FileSystem.rename(at: nil, imageDirectory(id), to: doomed)
            try FileSystem.removeTree(doomed)
            logger.info("removed image \(id)")
            return [id]
        }
    }

    // MARK: Building

    private func build(_ image: ResolvedImage, staging: String) throws -> StoredImage {
        let started = Date()
        let tree = staging + "/rootfs"
        try FileSystem.makeDirectory(at: nil, tree, mode: 0o755)
        let treeHandle = try FileSystem.openDirectory(at: nil, tree)
        var applier = LayerApplier(root: treeHandle, logger: logger, limits: limits)
        let diffIDs = image.configuration.rootfs?.diffIDs ?? []
        guard diffIDs.isEmpty || diffIDs.count == image.layers.count else {
            throw StorageError(
                .badInput,
                "image config lists \(diffIDs.count) layers but the manifest has \(image.layers.count); the image is inconsistent")
        }
        var imageBytesLeft = limits.imageBytes
        for (index, layer) in image.layers.enumerated() {
            let file = try FileDescriptor.open(layer.path, O_RDONLY)
            // Every layer's uncompressed stream is cut off at its limit, tar padding included, so
            // a decompression bomb stops there with one line.
            let exceeded = Self.limitError(layer.what, layerLimit: limits.layerBytes, imageLimit: limits.imageBytes)
            let limit = min(limits.layerBytes, imageBytesLeft)
            let (digest, size): (String, Int64)
            switch layer.encoding {
            case .tar:
                (digest, size) = try apply(
                    DigestingSource(LimitedSource(FileSource(file: file), limit: limit, exceeded: exceeded)),
                    with: &applier, what: layer.what)
            case .gzip:
                (digest, size) = try apply(
                    DigestingSource(LimitedSource(try GzipSource(FileSource(file: file)), limit: limit, exceeded: exceeded)),
                    with: &applier, what: layer.what)
            }
            imageBytesLeft -= size
            if !diffIDs.isEmpty && diffIDs[index] != digest {
                throw StorageError(
                    .digestMismatch,
                    "\(layer.what): uncompressed content is \(digest) but the config says \(diffIDs[index]); the image is corrupt")
            }
        }
        let output = staging + "/image"
        try FileSystem.makeDirectory(at: nil, output, mode: 0o755)
        try EROFSBuilder.build(tree: tree, output: output + "/rootfs.erofs")
        let erofs = try FileDescriptor.open(output + "/rootfs.erofs", O_RDONLY)
        try erofs.fsync()
        let record = StoredImage(
            id: image.id, manifestDigest: image.manifestDigest,
            config: image.configuration.config ?? .init(),
            layerCount: image.layers.count, sizeBytes: try erofs.size(),
            createdAt: Int(Date().timeIntervalSince1970), references: [], erofsPath: "")
        try writeAtomically(output + "/image.json", try JSONEncoder().encode(record))
        try FileSystem.rename(at: nil, output, to: imageDirectory(image.id))
        try addReferences(image.references, to: image.id)
        logger.info(
            "built image \(image.id) (\(image.layers.count) layers) in \(String(format: "%.2f", Date().timeIntervalSince(started)))s")
        return try lookup(reference: image.id)
    }

    /// Applies one layer; returns the digest and size of its uncompressed stream.
    private func apply<S: ByteSource>(
        _ source: DigestingSource<S>, with applier: inout LayerApplier, what: String
    ) throws -> (String, Int64) {
        var reader = TarReader(source, describing: what, limits: limits)
        try applier.apply(&reader, what: what)
        try reader.source.drain()
        return (reader.source.digest(), reader.source.count)
    }

    /// The error for a layer cut off by `LimitedSource`: its own limit, or what the image had left.
    private static func limitError(_ what: String, layerLimit: Int64, imageLimit: Int64) -> @Sendable (Int64) -> StorageError {
        { limit in
            if limit < layerLimit {
                return StorageError(.limitExceeded, "\(what) takes the image past \(imageLimit) uncompressed bytes; refusing the image")
            }
            return StorageError(.limitExceeded, "\(what) inflates to more than \(limit) bytes (the per-layer limit); refusing the image")
        }
    }

    // MARK: Records and names

    func imageDirectory(_ id: String) -> String { imagesDirectory + "/" + Digest.hex(id) }

    private func record(_ id: String) throws -> StoredImage {
        let bytes = try FileDescriptor.open(imageDirectory(id) + "/image.json", O_RDONLY).readToEnd()
        var image = try JSONDecoder().decode(StoredImage.self, from: Data(bytes))
        image.erofsPath = imageDirectory(id) + "/rootfs.erofs"
        return image
    }

    private func resolveID(_ reference: String) throws -> String {
        let notFound = StorageError(.notInStore, "no image '\(reference)' in the store")
        if reference.hasPrefix("sha256:") {
            guard Digest.isValid(reference), FileSystem.exists(imageDirectory(reference)) else { throw notFound }
            return reference
        }
        if let name = try? ImageReference(parsing: reference).description, let id = try readReferences()[name] {
            return id
        }
        // An id prefix, as `ls` prints it.
        if reference.count >= 12, reference.allSatisfy(\.isHexDigit),
            let directory = try? FileSystem.openDirectory(at: nil, imagesDirectory)
        {
            let matches = try FileSystem.entries(of: directory).filter { $0.hasPrefix(reference.lowercased()) && $0.count == 64 }
            if matches.count == 1 { return "sha256:" + matches[0] }
        }
        throw notFound
    }

    private func readReferences() throws -> [String: String] {
        guard let file = try? FileDescriptor.open(imagesDirectory + "/references.json", O_RDONLY) else { return [:] }
        return try JSONDecoder().decode([String: String].self, from: Data(try file.readToEnd()))
    }

    private func addReferences(_ names: [String], to id: String) throws {
        guard !names.isEmpty else { return }
        try updateReferences { references in
            for name in names { references[name] = id }
        }
    }

    /// Read-modify-write of the name table under its lock, replaced atomically.
    private func updateReferences(_ change: (inout [String: String]) throws -> Void) throws {
        let lock = try FileSystem.open(at: nil, imagesDirectory + "/locks/references.lock", O_RDWR | O_CREAT, mode: 0o600)
        _ = try FileSystem.lock(lock)
        var references = try readReferences()
        try change(&references)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(imagesDirectory + "/references.json", try encoder.encode(references))
    }

    // MARK: Staging, locks, atomic writes

    func prepare() throws {
        for directory in [imagesDirectory, imagesDirectory + "/tmp", imagesDirectory + "/locks"] {
            try FileSystem.makeDirectories(directory, mode: 0o700)
        }
        removeStaleStaging()
    }

    /// A staging directory, flocked while in use so cleanup can tell it from a crashed one.
    struct Staging {
        let path: String
        let lock: FileDescriptor
    }

    private static let inUseName = ".in-use"

    func makeStaging() throws -> Staging {
        var template = Array((imagesDirectory + "/tmp/stage-XXXXXX").utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemError.last("mkdtemp", subject: imagesDirectory + "/tmp")
        }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let lock = try FileSystem.open(at: nil, path + "/" + Self.inUseName, O_RDWR | O_CREAT, mode: 0o600)
        _ = try FileSystem.lock(lock)
        return Staging(path: path, lock: lock)
    }

    func removeStaging(_ staging: Staging) {
        do { try FileSystem.removeTree(staging.path) } catch { logger.warning("cannot remove staging \(staging.path): \(error)") }
        staging.lock.close()
    }

    /// Removes what crashed imports, pulls and removals left in tmp/: staging directories whose
    /// lock nobody holds, and half-deleted images. Safe while other rund processes work.
    /// Returns the paths removed (or, with `dryRun`, that would be).
    @discardableResult
    public func removeStaleStaging(dryRun: Bool = false) -> [String] {
        guard let directory = try? FileSystem.openDirectory(at: nil, imagesDirectory + "/tmp"),
            let names = try? FileSystem.entries(of: directory)
        else { return [] }
        var removed: [String] = []
        let now = Int(Date().timeIntervalSince1970)
        for name in names {
            let path = imagesDirectory + "/tmp/" + name
            // ctime: rename and mkdtemp both set it, so "young" means another process may be at work.
            let young = (try? FileSystem.status(at: nil, path)).map { now - Int($0.st_ctim.tv_sec) < 60 } ?? true
            if name.hasPrefix("stage-") {
                if let lock = try? FileDescriptor.open(path + "/" + Self.inUseName, O_RDWR) {
                    guard (try? FileSystem.lock(lock, wait: false)) == true else { continue }
                } else if young {
                    continue  // Just made; its lock file is not there yet.
                }
            } else if !name.hasPrefix("removed-") || young {
                continue
            }
            if dryRun { removed.append(path); continue }
            do {
                try FileSystem.removeTree(path)
                removed.append(path)
            } catch {
                logger.warning("cannot remove stale \(path): \(error)")
            }
        }
        return removed
    }

    private func imageLock(_ id: String) throws -> FileDescriptor {
        try Digest.check(id, what: "image")
        let lock = try FileSystem.open(at: nil, imagesDirectory + "/locks/" + Digest.hex(id) + ".lock", O_RDWR | O_CREAT, mode: 0o600)
        _ = try FileSystem.lock(lock)
        return lock
    }

    private func withImageLock<T>(_ id: String, _ body: () throws -> T) throws -> T {
        let lock = try imageLock(id)
        defer { lock.close() }
        return try body()
    }

    private func writeAtomically(_ path: String, _ data: Data) throws {
        let temporary = path + ".tmp-\(getpid())"
        let file = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        try file.writeAll(Array(data))
        try file.fsync()
        file.close()
        try FileSystem.rename(at: nil, temporary, to: path)
    }
}
