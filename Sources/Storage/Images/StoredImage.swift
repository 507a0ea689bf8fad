/// An image in the store: its EROFS root filesystem and what `rund run` needs to start it.
public struct StoredImage: Codable, Sendable {
    /// The config digest (`sha256:...`): the image's identity.
    public var id: String
    /// The manifest digest, when the image came from a registry or an OCI layout.
    public var manifestDigest: String?
    /// Entrypoint, command, environment, working directory and user.
    public var config: OCI.ImageConfiguration.Config
    public var layerCount: Int
    /// Size of the EROFS file in bytes.
    public var sizeBytes: Int64
    /// Unix seconds when the store built it.
    public var createdAt: Int
    /// Names pointing at it (`docker.io/library/busybox:latest`); filled in when read.
    public var references: [String]
    /// The read-only root filesystem; filled in when read.
    public var erofsPath: String

    public var shortID: String { String(id.dropFirst(7).prefix(12)) }
}
