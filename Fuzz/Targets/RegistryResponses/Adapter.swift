import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
@testable import Storage

/// Everything this target knows about Storage's internals, in one file, so that when Storage
/// changes shape only this adapter follows (written against main's RegistryClient, OCI and
/// Digest).
enum StorageAdapter {
    static let what = "fuzz registry"

    /// A 401's WWW-Authenticate header as RegistryClient.authenticate reads it: the Bearer
    /// parameters, then the token URL built from realm, service and scope. (The URL steps
    /// mirror `authenticate`, which is private and does network I/O.)
    static func readChallenge(_ challenge: String) {
        guard challenge.lowercased().hasPrefix("bearer ") else { return }
        let parameters = RegistryClient.challengeParameters(String(challenge.dropFirst(7)))
        guard let realm = parameters["realm"], var components = URLComponents(string: realm) else { return }
        var query = components.queryItems ?? []
        if let service = parameters["service"] { query.append(URLQueryItem(name: "service", value: service)) }
        query.append(URLQueryItem(name: "scope", value: parameters["scope"] ?? "repository:library/busybox:pull"))
        components.queryItems = query
        _ = components.url
    }

    /// A manifest GET's body as RegistryClient.resolveManifest reads it: the declared media type
    /// (else the Content-Type), then the index's linux/amd64 entry or the manifest's config.
    static func readManifestBody(_ body: [UInt8], contentType: String) {
        let data = Data(body)
        let declared =
            (try? JSONDecoder().decode(OCI.Index.self, from: data))?.mediaType
            ?? (try? JSONDecoder().decode(OCI.Manifest.self, from: data))?.mediaType
        let type = declared ?? contentType.split(separator: ";").first.map(String.init) ?? ""
        if OCI.MediaType.indexes.contains(type) {
            guard let index = try? JSONDecoder().decode(OCI.Index.self, from: data),
                let chosen = try? OCI.selectPlatform(index, what: what)
            else { return }
            _ = try? Digest.check(chosen.digest, what: what)
        } else if OCI.MediaType.manifests.contains(type) {
            guard let manifest = try? JSONDecoder().decode(OCI.Manifest.self, from: data) else { return }
            _ = try? Digest.check(manifest.config.digest, what: what)
            for descriptor in manifest.layers { _ = try? OCI.layerEncoding(descriptor.mediaType, what: what) }
        }
    }
}
