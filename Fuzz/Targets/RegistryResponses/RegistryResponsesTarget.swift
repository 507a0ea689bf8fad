import FuzzSupport

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    RegistryResponsesTarget.run(FuzzInput(data, size))
    return 0
}

/// What a registry sends back (Sources/Storage/Registry/RegistryClient.swift): the
/// WWW-Authenticate challenge of a 401 and a manifest or index body, through StorageAdapter.
/// Input: a 16-bit length, that many bytes of header, a Content-Type selector, then the body.
@main
enum RegistryResponsesTarget {
    static let contentTypes = [
        "application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8",
        "application/json", "",
    ]

    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        let header = input.bytes(Int(input.integer(UInt16.self) % 4096))
        StorageAdapter.readChallenge(String(decoding: header, as: UTF8.self))
        let contentType = contentTypes[Int(input.byte()) % contentTypes.count]
        StorageAdapter.readManifestBody(input.rest(), contentType: contentType)
    }

    /// Docker Hub's and GHCR's challenges, with an index and a manifest as they serve them.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func seed(_ header: String, _ contentType: UInt8, _ body: String) -> [UInt8] {
            var builder = FuzzInputBuilder()
            builder.integer(UInt16(header.utf8.count))
            builder.append(Array(header.utf8))
            builder.byte(contentType)
            builder.append(Array(body.utf8))
            return builder.bytes
        }
        let digest = "sha256:" + String(repeating: "ab", count: 32)
        let index = """
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[\
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(digest)","size":610,\
            "platform":{"architecture":"arm64","os":"linux","variant":"v8"}},\
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\(digest)","size":610,\
            "platform":{"architecture":"amd64","os":"linux"}}]}
            """
        let manifest = """
            {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",\
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1457,"digest":"\(digest)"},\
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2152262,"digest":"\(digest)"}]}
            """
        return [
            (
                "docker-hub",
                seed(
                    #"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#, 0,
                    index)
            ),
            ("ghcr", seed(#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull""#, 1, manifest)),
            ("unquoted", seed("bearer realm=https://r.example/t?x=1,service=r", 2, "{}")),
            ("basic", seed(#"Basic realm="Registry Realm""#, 3, "")),
        ]
    }
}
