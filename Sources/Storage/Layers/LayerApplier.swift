#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Logging

/// Applies layer tars, in order, onto a staging directory: OCI whiteouts, owners, modes, links,
/// devices and xattrs. Every path is walked one component at a time with O_NOFOLLOW, so an entry
/// can never be written through a symlink or outside the tree, whatever the archive says.
struct LayerApplier {
    private let root: FileDescriptor
    private let logger: Logger
    private let canChangeOwner = geteuid() == 0

    /// Paths (joined components) written by the layer being applied, with their ancestors.
    private var touched: Set<String> = []
    private var opaqueDirectories: [[String]] = []

    init(root: FileDescriptor, logger: Logger) {
        self.root = root
        self.logger = logger
    }

    /// Applies one layer tar stream; `what` names the layer in errors.
    mutating func apply<S: ByteSource>(_ reader: inout TarReader<S>, what: String) throws {
        touched = []
        opaqueDirectories = []
        while let entry = try reader.next() {
            try apply(entry, reader: &reader, what: what)
        }
        for directory in opaqueDirectories {
            guard let handle = try openDirectory(directory, create: false, what: what) else { continue }
            try prune(handle, prefix: directory.joined(separator: "/"))
        }
    }

    private mutating func apply<S: ByteSource>(_ entry: TarEntry, reader: inout TarReader<S>, what: String) throws {
        let components = try ArchivePath.components(entry.path, what: what)
        guard let name = components.last else { return }  // "./" itself: the root stays as made.
        let parentComponents = Array(components.dropLast())

        if name.hasPrefix(".wh.") {
            guard let parent = try openDirectory(parentComponents, create: false, what: what) else { return }
            if name == ".wh..wh..opq" {
                opaqueDirectories.append(parentComponents)
            } else {
                let hidden = String(name.dropFirst(4))
                let hiddenPath = (parentComponents + [hidden]).joined(separator: "/")
                guard !hidden.isEmpty, hidden != ".", hidden != ".." else { return }
                if !touched.contains(hiddenPath) { try FileSystem.removeTree(at: parent, hidden) }
            }
            return
        }

        guard let parent = try openDirectory(parentComponents, create: true, what: what) else { return }
        markTouched(components)
        let existing = try FileSystem.status(at: parent, name)
        let existingIsDirectory = existing.map { $0.st_mode & S_IFMT == S_IFDIR } ?? false

        if entry.kind == .directory {
            if existing != nil && !existingIsDirectory { try FileSystem.unlink(at: parent, name) }
            if !existingIsDirectory { try FileSystem.makeDirectory(at: parent, name, mode: 0o700) }
            let directory = try FileSystem.openDirectory(at: parent, name)
            try setExtendedAttributes(entry, on: directory, what: what)
            try setMetadata(entry, parent: parent, name: name)
            return
        }

        if existing != nil { try FileSystem.removeTree(at: parent, name) }
        switch entry.kind {
        case .regular:
            let file = try FileSystem.open(at: parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
            try copyContent(from: &reader, to: file, size: entry.size)
            try setExtendedAttributes(entry, on: file, what: what)
            try setMetadata(entry, parent: parent, name: name)
        case .symbolicLink:
            guard ArchivePath.symlinkStaysInside(target: entry.linkTarget, parent: parentComponents) else {
                throw StorageError(.badInput, "\(what): symlink '\(entry.path)' -> '\(entry.linkTarget)' points outside the image root; refusing the image")
            }
            try FileSystem.symlink(at: parent, name, target: entry.linkTarget)
            try setMetadata(entry, parent: parent, name: name)
        case .hardLink:
            let target = try ArchivePath.components(entry.linkTarget, what: what)
            guard let targetName = target.last,
                  let targetParent = try openDirectory(Array(target.dropLast()), create: false, what: what),
                  let targetStatus = try FileSystem.status(at: targetParent, targetName),
                  targetStatus.st_mode & S_IFMT != S_IFDIR else {
                throw StorageError(.badInput, "\(what): hard link '\(entry.path)' points to '\(entry.linkTarget)', which is not a file in the image; refusing the image")
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

    /// Opens the directory at `components` under the root without following any symlink.
    /// Missing directories are created (mode 0755, as tar does) or, if `create` is false, yield nil.
    private func openDirectory(_ components: [String], create: Bool, what: String) throws -> FileDescriptor? {
        var current = try FileSystem.openDirectory(at: root, ".")
        for (index, component) in components.enumerated() {
            do {
                current = try FileSystem.openDirectory(at: current, component)
            } catch let error as SystemError where error.errno == ENOENT {
                guard create else { return nil }
                try FileSystem.makeDirectory(at: current, component, mode: 0o755)
                current = try FileSystem.openDirectory(at: current, component)
            } catch let error as SystemError where error.errno == ELOOP || error.errno == ENOTDIR {
                let through = components[0...index].joined(separator: "/")
                throw StorageError(.badInput, "\(what): an entry is written through '\(through)', which is a symlink or a file; refusing the image")
            }
        }
        return current
    }

    private mutating func markTouched(_ components: [String]) {
        var path = ""
        for component in components {
            path = path.isEmpty ? component : path + "/" + component
            touched.insert(path)
        }
    }

    /// Removes, under an opaque directory, everything the current layer did not write.
    private func prune(_ directory: FileDescriptor, prefix: String) throws {
        for child in try FileSystem.entries(of: directory) {
            let path = prefix.isEmpty ? child : prefix + "/" + child
            if !touched.contains(path) {
                try FileSystem.removeTree(at: directory, child)
            } else if let st = try FileSystem.status(at: directory, child), st.st_mode & S_IFMT == S_IFDIR {
                try prune(try FileSystem.openDirectory(at: directory, child), prefix: path)
            }
        }
    }

    private func copyContent<S: ByteSource>(from reader: inout TarReader<S>, to file: FileDescriptor, size: Int64) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = try reader.readContent(into: buffer)
            if n == 0 { break }
            try file.writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// Owner, then mode (chown clears set-id bits), then time. Symlinks have no mode of their own.
    private func setMetadata(_ entry: TarEntry, parent: FileDescriptor, name: String) throws {
        if canChangeOwner {
            try FileSystem.changeOwner(at: parent, name, uid: entry.uid, gid: entry.gid)
        }
        if entry.kind != .symbolicLink {
            try FileSystem.changeMode(at: parent, name, mode: mode_t(entry.mode & 0o7777))
        }
        try FileSystem.setModificationTime(at: parent, name, seconds: entry.modificationTime)
    }

    private func setExtendedAttributes(_ entry: TarEntry, on file: FileDescriptor, what: String) throws {
        for attribute in entry.extendedAttributes {
            do {
                try FileSystem.setExtendedAttribute(on: file, name: attribute.name, value: attribute.value)
            } catch let error as SystemError {
                // Some namespaces (trusted.*, security.* under LSMs) are refused by the host; the
                // rest of the image is still usable, so say so and go on.
                logger.warning("\(what): cannot keep xattr \(attribute.name) on \(entry.path): \(error)")
            }
        }
    }
}
