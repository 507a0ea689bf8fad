/// The OCI image-spec and Docker v2 documents rund reads. Unknown fields are ignored.
public enum OCI {
    public enum MediaType {
        public static let ociIndex = "application/vnd.oci.image.index.v1+json"
        public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
        public static let ociConfig = "application/vnd.oci.image.config.v1+json"
        public static let ociLayer = "application/vnd.oci.image.layer.v1.tar"
        public static let ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
        public static let ociLayerNondistributable = "application/vnd.oci.image.layer.nondistributable.v1.tar"
        public static let ociLayerNondistributableGzip = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
        public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
        public static let dockerConfig = "application/vnd.docker.container.image.v1+json"
        public static let dockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip"
        public static let dockerLayer = "application/vnd.docker.image.rootfs.diff.tar"

        static let indexes: Set<String> = [ociIndex, dockerManifestList]
        static let manifests: Set<String> = [ociManifest, dockerManifest]
        static let configs: Set<String> = [ociConfig, dockerConfig]
    }

    public struct Platform: Codable, Sendable, Equatable {
        public var architecture: String
        public var os: String
        public var variant: String?
    }

    public struct Descriptor: Codable, Sendable {
        public var mediaType: String?
        public var digest: String
        public var size: Int64
        public var platform: Platform?
        public var annotations: [String: String]?
    }

    public struct Index: Codable, Sendable {
        public var schemaVersion: Int?
        public var mediaType: String?
        public var manifests: [Descriptor]
    }

    public struct Manifest: Codable, Sendable {
        public var schemaVersion: Int?
        public var mediaType: String?
        public var config: Descriptor
        public var layers: [Descriptor]
    }

    /// The image configuration: only what running the image and checking layers needs.
    public struct ImageConfiguration: Codable, Sendable {
        public struct Config: Codable, Sendable, Equatable {
            public var user: String?
            public var environment: [String]?
            public var entrypoint: [String]?
            public var command: [String]?
            public var workingDirectory: String?

            public init(
                user: String? = nil, environment: [String]? = nil, entrypoint: [String]? = nil,
                command: [String]? = nil, workingDirectory: String? = nil
            ) {
                self.user = user
                self.environment = environment
                self.entrypoint = entrypoint
                self.command = command
                self.workingDirectory = workingDirectory
            }

            enum CodingKeys: String, CodingKey {
                case user = "User", environment = "Env", entrypoint = "Entrypoint", command = "Cmd", workingDirectory = "WorkingDir"
            }
        }

        public struct RootFS: Codable, Sendable {
            public var type: String?
            public var diffIDs: [String]?

            enum CodingKeys: String, CodingKey { case type, diffIDs = "diff_ids" }
        }

        public var architecture: String?
        public var os: String?
        public var config: Config?
        public var rootfs: RootFS?
    }

    /// `manifest.json` of a `docker save` archive.
    struct DockerArchiveEntry: Codable {
        var config: String
        var repoTags: [String]?
        var layers: [String]

        enum CodingKeys: String, CodingKey { case config = "Config", repoTags = "RepoTags", layers = "Layers" }
    }

    /// The layer encodings rund can apply.
    enum LayerEncoding { case tar, gzip }

    static func layerEncoding(_ mediaType: String?, what: String) throws -> LayerEncoding {
        switch mediaType {
        case MediaType.ociLayer, MediaType.dockerLayer, MediaType.ociLayerNondistributable: return .tar
        case MediaType.ociLayerGzip, MediaType.dockerLayerGzip, MediaType.ociLayerNondistributableGzip: return .gzip
        default:
            throw StorageError(
                .unsupported, "\(what): unsupported layer media type '\(mediaType ?? "none")' (rund applies tar and tar+gzip layers)")
        }
    }

    static let wantedPlatform = Platform(architecture: "amd64", os: "linux", variant: nil)

    /// The manifest descriptor for linux/amd64 in an index, or a clear error.
    static func selectPlatform(_ index: Index, what: String) throws -> Descriptor {
        if let match = index.manifests.first(where: { $0.platform?.os == "linux" && $0.platform?.architecture == "amd64" }) {
            return match
        }
        // Layout indexes often list one manifest per tag without a platform: take the first.
        if let first = index.manifests.first, index.manifests.allSatisfy({ $0.platform == nil }) { return first }
        let offered = index.manifests.compactMap { $0.platform.map { "\($0.os)/\($0.architecture)" } }
        throw StorageError(
            .unsupported,
            "\(what) has no linux/amd64 image (offers: \(offered.isEmpty ? "none" : offered.joined(separator: ", "))); pick an image built for linux/amd64"
        )
    }

    static func checkLayerCount(_ count: Int, limits: StorageLimits, what: String) throws {
        guard count <= limits.layersPerImage else {
            throw StorageError(.limitExceeded, "\(what) has \(count) layers, more than the limit of \(limits.layersPerImage); refusing it")
        }
    }

    static func checkPlatform(_ config: ImageConfiguration, what: String) throws {
        if let os = config.os, let architecture = config.architecture, os != "linux" || architecture != "amd64" {
            throw StorageError(
                .unsupported, "\(what) is built for \(os)/\(architecture), not linux/amd64; pick an image built for linux/amd64")
        }
    }
}
