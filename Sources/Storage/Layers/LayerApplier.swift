#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Logging

/// Applies layer tars, in order, onto a staging directory: OCI whiteouts, owners, modes, links,
/// devices and xattrs.
///
/// It cannot write outside the tree, by construction: every directory an entry needs is opened
/// with openat2 relative to the tree's root descriptor, `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
/// RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV` (no absolute path, no ".." above the root, no
/// symlink anywhere on the way, whatever the name's bytes), and the entry itself is then one
/// checked component handled by an `*at` call on that directory with AT_SYMLINK_NOFOLLOW or
/// O_NOFOLLOW. `ArchivePath` refuses bad names on their bytes first, so a hostile name gets a
/// clear error rather than a syscall failure.
struct LayerApplier {
    private let root: FileDescriptor
    private let logger: Logger
    private let limits: StorageLimits
    private let canChangeOwner = geteuid() == 0

    /// What the layer being applied wrote, for whiteouts and opaque directories.
    private var written: WrittenPaths
    private var opaqueDirectories: [[[UInt8]]] = []

    /// How every directory on the way to an entry is resolved.
    static let resolve: ResolveFlags = [.beneath, .noSymlinks, .noMagicLinks, .noCrossingMounts]

    init(root: FileDescriptor, logger: Logger, limits: StorageLimits = StorageLimits()) {
        self.root = root
        self.logger = logger
        self.limits = limits
        written = WrittenPaths(limit: limits.entriesPerLayer)
    }

    /// Applies one layer tar stream; `what` names the layer in errors.
    mutating func apply<S: ByteSource>(_ reader: inout TarReader<S>, what: String) throws {
        written = WrittenPaths(limit: limits.entriesPerLayer)
        opaqueDirectories = []
        while let entry = try reader.next() {
            try failingClearly(entry.printablePath, what: what) {
                try apply(entry, reader: &reader, what: what)
            }
        }
        for directory in opaqueDirectories {
            try failingClearly(ArchivePath.printable(ArchivePath.joined(directory)), what: what) {
                guard let handle = try openDirectory(directory, create: false, what: what) else { return }
                try prune(handle, written: written.node(directory))
            }
        }
    }

    private mutating func apply<S: ByteSource>(_ entry: TarEntry, reader: inout TarReader<S>, what: String) throws {
        let components = try ArchivePath.components(entry.path, directory: entry.kind == .directory, what: what)
        guard let name = components.last else { return }  // "./" itself: the root stays as made.
        let parentComponents = Array(components.dropLast())
        // A whiteout marks one entry; as a directory on the way to another it would be written
        // into the image as a plain directory that other runtimes read as a whiteout.
        if parentComponents.contains(where: ArchivePath.isWhiteout) {
            throw StorageError(
                .badInput, "\(what): entry '\(entry.printablePath)' has a whiteout ('.wh.') as a directory; refusing the image")
        }

        if ArchivePath.isWhiteout(name) {
            try applyWhiteout(name, in: parentComponents, entry: entry, what: what)
            return
        }

        guard let parent = try openDirectory(parentComponents, create: true, what: what) else { return }
        guard written.insert(components) else {
            throw StorageError(.limitExceeded, "\(what) writes more than \(limits.entriesPerLayer) paths; refusing the image")
        }
        let existing = try FileSystem.status(at: parent, name)
        let existingIsDirectory = existing.map { $0.st_mode & S_IFMT == S_IFDIR } ?? false

        if entry.kind == .directory {
            if existing != nil && !existingIsDirectory { try FileSystem.unlink(at: parent, name) }
            if !existingIsDirectory { try FileSystem.makeDirectory(at: parent, name, mode: 0o700) }
            let directory = try FileSystem.openat2(at: parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, resolve: Self.resolve)
            try setMetadata(entry, on: directory, what: what)
            return
        }

        if existing != nil { try FileSystem.removeTree(at: parent, name) }
        switch entry.kind {
        case .regular:
            let file = try FileSystem.openat2(
                at: parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600,
                resolve: Self.resolve)
            try copyContent(from: &reader, to: file)
            try setMetadata(entry, on: file, what: what)
        case .symbolicLink:
            guard ArchivePath.symlinkStaysInside(target: entry.linkTarget, depth: parentComponents.count) else {
                throw StorageError(
                    .badInput,
                    "\(what): symlink '\(entry.printablePath)' -> '\(ArchivePath.printable(entry.linkTarget))' points outside the image root or is not a valid target; refusing the image"
                )
            }
            try FileSystem.symlink(at: parent, name, target: entry.linkTarget)
            try setMetadata(entry, parent: parent, name: name)
        case .hardLink:
            let target = try ArchivePath.components(entry.linkTarget, what: what)
            guard let targetName = target.last,
                let targetParent = try openDirectory(Array(target.dropLast()), create: false, what: what),
                let targetStatus = try FileSystem.status(at: targetParent, targetName),
                targetStatus.st_mode & S_IFMT != S_IFDIR
            else {
                throw StorageError(
                    .badInput,
                    "\(what): hard link '\(entry.printablePath)' points to '\(ArchivePath.printable(entry.linkTarget))', which is not a file in the image; refusing the image"
                )
            }
            try FileSystem.link(from: targetParent, targetName, to: parent, name)
        case .characterDevice, .blockDevice, .fifo:
            let type: mode_t = entry.kind == .fifo ? S_IFIFO : entry.kind == .characterDevice ? S_IFCHR : S_IFBLK
            let device = entry.kind == .fifo ? 0 : FileSystem.deviceNumber(major: entry.deviceMajor, minor: entry.deviceMinor)
            try FileSystem.makeNode(at: parent, name, mode: type | 0o600, device: device)
            try setMetadata(entry, parent: parent, name: name)
        case .directory:
            break
        }
    }

    /// `.wh.NAME` removes NAME as lower layers left it; `.wh..wh..opq` marks its directory opaque.
    private mutating func applyWhiteout(_ name: [UInt8], in parentComponents: [[UInt8]], entry: TarEntry, what: String) throws {
        if name == ArchivePath.opaqueMarker {
            guard try openDirectory(parentComponents, create: false, what: what) != nil else { return }
            opaqueDirectories.append(parentComponents)
            return
        }
        if name.starts(with: ArchivePath.aufsMetadataPrefix) { return }  // AUFS bookkeeping, not content.
        let hidden = Array(name.dropFirst(ArchivePath.whiteoutPrefix.count))
        guard !hidden.isEmpty, hidden != [ArchivePath.dot], hidden != [ArchivePath.dot, ArchivePath.dot] else {
            throw StorageError(.badInput, "\(what): whiteout '\(entry.printablePath)' names no entry; refusing the image")
        }
        guard let parent = try openDirectory(parentComponents, create: false, what: what) else { return }
        if !written.contains(parentComponents + [hidden]) { try FileSystem.removeTree(at: parent, hidden) }
    }

    /// Opens the directory at `components` beneath the root, never through a symlink. Missing
    /// directories are created (mode 0755, as tar does) or, if `create` is false, yield nil.
    private func openDirectory(_ components: [[UInt8]], create: Bool, what: String) throws -> FileDescriptor? {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW
        // One syscall for the whole path when it is all there; else walk it for the precise answer.
        if let whole = try? FileSystem.openat2(
            at: root, components.isEmpty ? [ArchivePath.dot] : ArchivePath.joined(components),
            flags, resolve: Self.resolve)
        {
            return whole
        }
        var current = try FileSystem.openat2(at: root, [ArchivePath.dot], flags, resolve: Self.resolve)
        for (index, component) in components.enumerated() {
            do {
                current = try FileSystem.openat2(at: current, component, flags, resolve: Self.resolve)
            } catch let error as SystemError where error.errno == ENOENT {
                guard create else { return nil }
                try FileSystem.makeDirectory(at: current, component, mode: 0o755)
                current = try FileSystem.openat2(at: current, component, flags, resolve: Self.resolve)
            } catch let error as SystemError where [ELOOP, ENOTDIR, EXDEV].contains(error.errno) {
                let through = ArchivePath.printable(ArchivePath.joined(Array(components[0...index])))
                throw StorageError(
                    .badInput, "\(what): an entry's path goes through '\(through)', which is a symlink or a file; refusing the image")
            }
        }
        return current
    }

    /// Removes, under an opaque directory, everything the current layer did not write.
    private func prune(_ directory: FileDescriptor, written node: WrittenPaths.Node?) throws {
        for child in try FileSystem.entryNames(of: directory) {
            guard let childNode = node?.children[child] else {
                try FileSystem.removeTree(at: directory, child)
                continue
            }
            if let st = try FileSystem.status(at: directory, child), st.st_mode & S_IFMT == S_IFDIR {
                try prune(
                    try FileSystem.openat2(at: directory, child, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, resolve: Self.resolve),
                    written: childNode)
            }
        }
    }

    private func copyContent<S: ByteSource>(from reader: inout TarReader<S>, to file: FileDescriptor) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = try reader.readContent(into: buffer)
            if n == 0 { break }
            try file.writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// Files and directories, through their open descriptor: owner, then mode (chown clears
    /// set-id bits), then xattrs (chown also drops security.capability), then time.
    private func setMetadata(_ entry: TarEntry, on file: FileDescriptor, what: String) throws {
        if canChangeOwner { try FileSystem.changeOwner(of: file, uid: entry.uid, gid: entry.gid) }
        try FileSystem.changeMode(of: file, mode: mode_t(entry.mode & 0o7777))
        try setExtendedAttributes(entry, on: file, what: what)
        try FileSystem.setModificationTime(of: file, seconds: entry.modificationTime)
    }

    /// Symlinks, devices and FIFOs, by name in their directory, never following a symlink.
    /// Symlinks have no mode of their own.
    private func setMetadata(_ entry: TarEntry, parent: FileDescriptor, name: [UInt8]) throws {
        if canChangeOwner { try FileSystem.changeOwner(at: parent, name, uid: entry.uid, gid: entry.gid) }
        if entry.kind != .symbolicLink { try FileSystem.changeMode(at: parent, name, mode: mode_t(entry.mode & 0o7777)) }
        try FileSystem.setModificationTime(at: parent, name, seconds: entry.modificationTime)
    }

    private func setExtendedAttributes(_ entry: TarEntry, on file: FileDescriptor, what: String) throws {
        for attribute in entry.extendedAttributes {
            do {
                try FileSystem.setExtendedAttribute(on: file, name: attribute.name, value: attribute.value)
            } catch let error as SystemError {
                // Some namespaces (trusted.*, security.* under LSMs) are refused by the host; the
                // rest of the image is still usable, so say so and go on.
                logger.warning("\(what): cannot keep xattr \(ArchivePath.printable(attribute.name)) on \(entry.printablePath): \(error)")
            }
        }
    }

    /// Turns a failed syscall into one line naming the layer and the entry. A name the lexical
    /// check let through but the kernel refused to resolve beneath the root is the image's fault.
    private func failingClearly(_ path: String, what: String, _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as SystemError {
            switch error.errno {
            case EXDEV, ELOOP, ENOTDIR, EINVAL, ENAMETOOLONG, EOPNOTSUPP:
                throw StorageError(
                    .badInput, "\(what): entry '\(path)' cannot be applied inside the image root (\(error)); refusing the image")
            case ENOSPC, EDQUOT:
                throw StorageError(.io, "\(what): no space left while writing '\(path)' (\(error)); free space under the state root")
            default:
                throw StorageError(.io, "\(what): cannot apply entry '\(path)': \(error)")
            }
        }
    }
}

/// The paths one layer wrote, as a tree of name components (so marking a path also marks its
/// ancestors at the cost of only the components not seen before), bounded in size.
struct WrittenPaths {
    final class Node {
        var children: [[UInt8]: Node] = [:]
    }

    let root = Node()
    private(set) var count = 0
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Marks a path and its ancestors; false when that would pass the limit.
    mutating func insert(_ components: [[UInt8]]) -> Bool {
        var node = root
        for component in components {
            if let child = node.children[component] {
                node = child
                continue
            }
            guard count < limit else { return false }
            let child = Node()
            node.children[component] = child
            count += 1
            node = child
        }
        return true
    }

    func node(_ components: [[UInt8]]) -> Node? {
        var node = root
        for component in components {
            guard let child = node.children[component] else { return nil }
            node = child
        }
        return node
    }

    func contains(_ components: [[UInt8]]) -> Bool { node(components) != nil }
}
