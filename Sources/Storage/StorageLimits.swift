/// Bounds on everything an image or a registry controls. Generous for real images, finite for
/// hostile ones: going past any of them stops the import or pull with one line
/// (`StorageError.Kind.limitExceeded`) and leaves the store as it was.
public struct StorageLimits: Sendable, Equatable {
    /// Uncompressed bytes of one layer's tar stream (what a gzip bomb inflates to).
    public var layerBytes: Int64 = 8 << 30
    /// Uncompressed bytes of all layers of one image together.
    public var imageBytes: Int64 = 32 << 30
    /// Bytes unpacked from one import archive (its blobs, compressed as stored).
    public var archiveBytes: Int64 = 32 << 30
    /// Layers in one image.
    public var layersPerImage = 1024
    /// Paths one tar stream may write: entries and the directories they imply (bounds the memory
    /// kept per layer for whiteout and opaque-directory bookkeeping).
    public var entriesPerLayer = 1 << 20
    /// One pax extended header or GNU long name/link body.
    public var paxHeaderBytes = 1 << 20
    /// pax global headers of one archive, all together.
    public var paxGlobalBytes = 1 << 20
    /// pax/GNU extension headers in a row before one entry.
    public var extensionHeadersPerEntry = 64
    /// A manifest, index, image config, docker-save manifest.json or token response.
    public var documentBytes = 4 << 20

    public init() {}

    /// Kernel limits on names: a component (NAME_MAX) and a whole path (PATH_MAX).
    static let nameComponentBytes = 255
    static let pathBytes = 4096
}
