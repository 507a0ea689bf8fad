#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HostOS

/// An OCI image-layout tarball or a `docker save` archive, unpacked into a staging directory
/// (every member hashed on the way) and resolved to one linux/amd64 image.
struct ImageArchive {
    private struct Member {
        var localPath: String
        var digest: String
        var size: Int64
    }

    /// Members by normalised name (`ArchivePath` components joined by "/"), as bytes: two names
    /// are the same member only when their bytes are (no Unicode equivalence).
    private var members: [[UInt8]: Member] = [:]
    private var links: [[UInt8]: [UInt8]] = [:]
    private let what: String
    private let limits: StorageLimits

    /// Unpacks `archive` (optionally gzip-compressed) into `staging`. Member names never reach
    /// the filesystem: each member is stored under a counter, so hostile names cannot escape.
    init(unpacking archive: String, into staging: String, limits: StorageLimits = StorageLimits()) throws {
        what = "archive \(archive)"
        self.limits = limits
        let file: FileDescriptor
        do {
            file = try FileDescriptor.open(archive, O_RDONLY)
        } catch let error as SystemError {
            throw StorageError(.notFound, "cannot open \(archive): \(error.message)")
        }
        var magic = [UInt8](repeating: 0, count: 2)
        _ = try magic.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) }
        let what = self.what
        let tooLarge: @Sendable (Int64) -> StorageError = { limit in
            StorageError(.limitExceeded, "\(what) unpacks to more than \(limit) bytes; refusing it")
        }
        if magic == [0x1f, 0x8b] {
            let source = LimitedSource(try GzipSource(FileSource(file: file)), limit: limits.archiveBytes, exceeded: tooLarge)
            var reader = TarReader(source, describing: what, limits: limits)
            try unpack(&reader, into: staging)
        } else {
            var reader = TarReader(
                LimitedSource(FileSource(file: file), limit: limits.archiveBytes, exceeded: tooLarge),
                describing: what, limits: limits)
            try unpack(&reader, into: staging)
        }
    }

    private mutating func unpack<S: ByteSource>(_ reader: inout TarReader<S>, into staging: String) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)
        defer { buffer.deallocate() }
        var count = 0
        while let entry = try reader.next() {
            let components = try ArchivePath.components(entry.path, directory: entry.kind == .directory, what: what)
            let name = ArchivePath.joined(components)
            count += 1
            guard count <= limits.entriesPerLayer else {
                throw StorageError(.limitExceeded, "\(what) has more than \(limits.entriesPerLayer) members; refusing it")
            }
            switch entry.kind {
            case .regular:
                let localPath = staging + "/member-\(count)"
                let out = try FileDescriptor.open(localPath, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
                var hasher = SHA256()
                while true {
                    let n = try reader.readContent(into: buffer)
                    if n == 0 { break }
                    let chunk = UnsafeRawBufferPointer(rebasing: buffer[0..<n])
                    hasher.update(chunk)
                    try out.writeAll(chunk)
                }
                members[name] = Member(localPath: localPath, digest: "sha256:" + hasher.finalizeHex(), size: entry.size)
            case .symbolicLink, .hardLink:
                // docker save links duplicate layers; resolve them later, inside the archive only.
                let base = entry.kind == .hardLink ? [] : Array(components.dropLast())
                links[name] = try resolveLink(entry, from: base)
            default:
                continue
            }
        }
    }

    /// A link target inside the archive, as a normalised name: relative to the link's directory
    /// (a symlink) or to the archive root (a hard link); never above the root, never absolute.
    private func resolveLink(_ entry: TarEntry, from base: [[UInt8]]) throws -> [UInt8] {
        let outside = StorageError(.badInput, "\(what): link '\(entry.printablePath)' points outside the archive")
        guard !entry.linkTarget.contains(0), entry.linkTarget.first != ArchivePath.slash else { throw outside }
        var parts = base
        for part in entry.linkTarget.split(separator: ArchivePath.slash) where !part.elementsEqual([ArchivePath.dot]) {
            if part.elementsEqual([ArchivePath.dot, ArchivePath.dot]) {
                guard !parts.isEmpty else { throw outside }
                parts.removeLast()
            } else {
                parts.append(Array(part))
            }
        }
        return ArchivePath.joined(parts)
    }

    private func member(_ name: [UInt8]) -> Member? {
        var current = name
        for _ in 0..<8 {
            if let member = members[current] { return member }
            guard let next = links[current] else { return nil }
            current = next
        }
        return nil
    }

    /// A member named by a document (docker save's manifest.json), checked like a tar name.
    private func member(named name: String) throws -> Member? {
        member(ArchivePath.joined(try ArchivePath.components(Array(name.utf8), what: what)))
    }

    private func memberBytes(_ name: String) throws -> [UInt8] {
        guard let member = try member(named: name) else {
            throw StorageError(.badInput, "\(what) has no '\(name)'; it is not a complete OCI layout or docker save archive")
        }
        return try document(member, name)
    }

    /// A JSON document's bytes, its size checked before anything is read.
    private func document(_ member: Member, _ name: String) throws -> [UInt8] {
        guard member.size <= Int64(limits.documentBytes) else {
            throw StorageError(
                .limitExceeded,
                "\(what): \(name) is \(member.size) bytes, more than the \(limits.documentBytes)-byte limit for a document; refusing it")
        }
        return try FileDescriptor.open(member.localPath, O_RDONLY).readToEnd(limit: limits.documentBytes)
    }

    /// Resolves the archive to the linux/amd64 image it holds.
    func resolve() throws -> ResolvedImage {
        if try member(named: "index.json") != nil, try member(named: "oci-layout") != nil {
            return try resolveLayout()
        }
        if try member(named: "manifest.json") != nil {
            return try resolveDockerSave()
        }
        throw StorageError(
            .badInput, "\(what) is neither an OCI image layout (index.json, oci-layout) nor a docker save archive (manifest.json)")
    }

    private func blob(_ descriptor: OCI.Descriptor) throws -> Member {
        try Digest.check(descriptor.digest, what: what)
        guard let member = try member(named: "blobs/sha256/" + Digest.hex(descriptor.digest)) else {
            throw StorageError(.badInput, "\(what) lacks blob \(descriptor.digest); the layout is incomplete")
        }
        guard member.digest == descriptor.digest, member.size == descriptor.size else {
            throw StorageError(
                .digestMismatch,
                "\(what): blob \(descriptor.digest) does not match its digest or size (got \(member.digest), \(member.size) bytes); the archive is corrupt"
            )
        }
        return member
    }

    private func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], _ name: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw StorageError(.badInput, "\(what): \(name) is not a valid document (\(error.localizedDescription))")
        }
    }

    private func resolveLayout() throws -> ResolvedImage {
        var index = try decode(OCI.Index.self, try memberBytes("index.json"), "index.json")
        var references: [String] = []
        // An index may point to a nested index (multi-platform) or straight at manifests.
        for _ in 0..<4 {
            let chosen = try OCI.selectPlatform(index, what: what)
            if let name = chosen.annotations?["org.opencontainers.image.ref.name"],
                let reference = try? ImageReference(parsing: name), name.contains("/") || name.contains(":")
            {
                references.append(reference.description)
            }
            let bytes = try document(try blob(chosen), "manifest \(chosen.digest)")
            let mediaType = chosen.mediaType ?? (try? decode(OCI.Manifest.self, bytes, "manifest").mediaType) ?? nil
            if let mediaType, OCI.MediaType.indexes.contains(mediaType) {
                index = try decode(OCI.Index.self, bytes, "image index")
                continue
            }
            if let mediaType, !OCI.MediaType.manifests.contains(mediaType) {
                throw StorageError(.unsupported, "\(what): unsupported manifest media type '\(mediaType)'")
            }
            let manifest = try decode(OCI.Manifest.self, bytes, "manifest")
            return try resolveManifest(manifest, digest: chosen.digest, references: references)
        }
        throw StorageError(.badInput, "\(what): image indexes nest too deeply")
    }

    private func resolveManifest(_ manifest: OCI.Manifest, digest: String, references: [String]) throws -> ResolvedImage {
        let configMember = try blob(manifest.config)
        let configuration = try decode(OCI.ImageConfiguration.self, try document(configMember, "image config"), "image config")
        try OCI.checkPlatform(configuration, what: what)
        try OCI.checkLayerCount(manifest.layers.count, limits: limits, what: what)
        var layers: [ResolvedImage.Layer] = []
        for (number, descriptor) in manifest.layers.enumerated() {
            let layerWhat = "layer \(number + 1) (\(descriptor.digest))"
            let encoding = try OCI.layerEncoding(descriptor.mediaType, what: layerWhat)
            layers.append(.init(path: try blob(descriptor).localPath, encoding: encoding, what: layerWhat))
        }
        return ResolvedImage(
            id: manifest.config.digest, manifestDigest: digest, configuration: configuration, layers: layers, references: references)
    }

    private func resolveDockerSave() throws -> ResolvedImage {
        let entries = try decode([OCI.DockerArchiveEntry].self, try memberBytes("manifest.json"), "manifest.json")
        guard let entry = entries.first else { throw StorageError(.badInput, "\(what): manifest.json lists no image") }
        guard let configMember = try member(named: entry.config) else {
            throw StorageError(.badInput, "\(what) lacks its image config '\(entry.config)'")
        }
        let configuration = try decode(OCI.ImageConfiguration.self, try document(configMember, "image config"), "image config")
        try OCI.checkPlatform(configuration, what: what)
        try OCI.checkLayerCount(entry.layers.count, limits: limits, what: what)
        var layers: [ResolvedImage.Layer] = []
        for (number, name) in entry.layers.enumerated() {
            let layerWhat = "layer \(number + 1) (\(ArchivePath.printable(Array(name.utf8))))"
            guard let layer = try member(named: name) else {
                throw StorageError(.badInput, "\(what) lacks \(layerWhat)")
            }
            var magic = [UInt8](repeating: 0, count: 2)
            _ = try magic.withUnsafeMutableBytes { try FileDescriptor.open(layer.localPath, O_RDONLY).pread(into: $0, at: 0) }
            layers.append(.init(path: layer.localPath, encoding: magic == [0x1f, 0x8b] ? .gzip : .tar, what: layerWhat))
        }
        let references = (entry.repoTags ?? []).compactMap { try? ImageReference(parsing: $0).description }
        return ResolvedImage(
            id: configMember.digest, manifestDigest: nil, configuration: configuration, layers: layers, references: references)
    }
}
