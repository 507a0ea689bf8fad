/// An image whose config and layer blobs are all on local disk and verified:
/// what both `import` and `pull` hand to the store to build.
struct ResolvedImage {
    struct Layer {
        var path: String
        var encoding: OCI.LayerEncoding
        var what: String
    }

    /// The config digest: the image's identity in the store.
    var id: String
    var manifestDigest: String?
    var configuration: OCI.ImageConfiguration
    var layers: [Layer]
    var references: [String]
}
