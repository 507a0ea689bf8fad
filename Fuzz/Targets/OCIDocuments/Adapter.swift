import Foundation
@testable import Storage

/// Everything this target knows about Storage's internals, in one file, so that when Storage
/// changes shape only this adapter follows (written against main's OCI, Digest, ImageReference,
/// ArchivePath and ImageArchive's use of them).
enum StorageAdapter {
    static let what = "fuzz input"

    /// The document decoded as each kind an image archive holds (JSONDecoder, as ImageArchive
    /// decodes them), and each decoded document used the way ImageArchive uses it.
    static func readDocuments(_ bytes: [UInt8]) {
        let data = Data(bytes)
        let decoder = JSONDecoder()
        if let index = try? decoder.decode(OCI.Index.self, from: data) {
            // ImageArchive.resolveLayout: the platform's manifest, its reference annotation, its digest.
            if let chosen = try? OCI.selectPlatform(index, what: what) {
                if let name = chosen.annotations?["org.opencontainers.image.ref.name"],
                    let reference = try? ImageReference(parsing: name)
                {
                    _ = (reference.description, reference.manifestReference)
                }
                if (try? Digest.check(chosen.digest, what: what)) != nil { _ = Digest.hex(chosen.digest) }
                if let mediaType = chosen.mediaType {
                    _ = OCI.MediaType.indexes.contains(mediaType) || OCI.MediaType.manifests.contains(mediaType)
                }
            }
        }
        if let manifest = try? decoder.decode(OCI.Manifest.self, from: data) {
            // ImageArchive.resolveManifest: the config blob, then every layer's encoding.
            _ = try? Digest.check(manifest.config.digest, what: what)
            for descriptor in manifest.layers {
                _ = try? OCI.layerEncoding(descriptor.mediaType, what: what)
                _ = Digest.isValid(descriptor.digest)
            }
        }
        if let configuration = try? decoder.decode(OCI.ImageConfiguration.self, from: data) {
            _ = try? OCI.checkPlatform(configuration, what: what)
        }
        if let entries = try? decoder.decode([OCI.DockerArchiveEntry].self, from: data), let entry = entries.first {
            // ImageArchive.resolveDockerSave: config and layer names are archive member paths.
            _ = try? ArchivePath.components(Array(entry.config.utf8), what: what)
            for name in entry.layers { _ = try? ArchivePath.components(Array(name.utf8), what: what) }
            for tag in entry.repoTags ?? [] { _ = try? ImageReference(parsing: tag) }
        }
    }
}
