#if canImport(Glibc)
import Glibc
#endif
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import HostOS
import Logging

/// A registry v2 (OCI distribution) client for pulls: anonymous or bearer-token auth, index
/// resolution to linux/amd64, and digest and size verification of every document and blob.
final class RegistryClient {
    struct Target {
        var manifest: OCI.Manifest
        var manifestDigest: String
    }

    private let reference: ImageReference
    private let baseURL: String
    private let session: URLSession
    private let timeout: Double
    private let logger: Logger
    private var token: String?
    private let challenges = ChallengeRecorder()

    private static let manifestTypes = [
        OCI.MediaType.ociIndex, OCI.MediaType.ociManifest, OCI.MediaType.dockerManifestList, OCI.MediaType.dockerManifest,
    ].joined(separator: ", ")
    private static let documentLimit = 4 << 20

    init(reference: ImageReference, insecure: Bool, timeout: Double, logger: Logger) {
        self.reference = reference
        let host = reference.registry == "docker.io" ? "registry-1.docker.io" : reference.registry
        baseURL = (insecure ? "http://" : "https://") + host
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = max(timeout, 3600)
        session = URLSession(configuration: configuration, delegate: challenges, delegateQueue: nil)
        self.timeout = timeout
        self.logger = logger
    }

    deinit { session.finishTasksAndInvalidate() }

    /// Fetches the manifest, following an index to its linux/amd64 entry.
    func resolveManifest() async throws -> Target {
        var reference = self.reference.manifestReference
        var expected = self.reference.digest
        for _ in 0..<3 {
            let (body, response) = try await get("/manifests/" + reference, accept: Self.manifestTypes, what: "manifest \(self.reference)")
            guard body.count <= Self.documentLimit else { throw registryError("manifest of \(self.reference) is larger than 4 MiB") }
            let digest = "sha256:" + SHA256.hash(Array(body))
            if let expected, expected != digest {
                throw StorageError(.digestMismatch, "manifest of \(self.reference) has digest \(digest), expected \(expected); the registry served wrong content")
            }
            let mediaType = (response.value(forHTTPHeaderField: "Content-Type") ?? "").split(separator: ";").first.map(String.init)
            let declared = (try? JSONDecoder().decode(OCI.Index.self, from: body))?.mediaType
                ?? (try? JSONDecoder().decode(OCI.Manifest.self, from: body))?.mediaType
            let type = declared ?? mediaType ?? ""
            if OCI.MediaType.indexes.contains(type) {
                let index = try decode(OCI.Index.self, body, "image index of \(self.reference)")
                let chosen = try OCI.selectPlatform(index, what: "image \(self.reference)")
                try Digest.check(chosen.digest, what: "image index of \(self.reference)")
                reference = chosen.digest
                expected = chosen.digest
                continue
            }
            guard OCI.MediaType.manifests.contains(type) else {
                throw StorageError(.unsupported, "\(self.reference): unsupported manifest media type '\(type)'; rund reads OCI and Docker v2 manifests")
            }
            let manifest = try decode(OCI.Manifest.self, body, "manifest of \(self.reference)")
            try Digest.check(manifest.config.digest, what: "manifest of \(self.reference)")
            return Target(manifest: manifest, manifestDigest: digest)
        }
        throw registryError("image index of \(self.reference) nests too deeply")
    }

    /// Downloads config and layers into `staging`, verifying each blob.
    func download(_ target: Target, into staging: String, references: [String],
                  progress: (@Sendable (String) -> Void)?) async throws -> ResolvedImage {
        guard target.manifest.config.size <= Self.documentLimit else { throw registryError("image config is larger than 4 MiB") }
        let configPath = staging + "/config.json"
        try await fetchBlob(target.manifest.config, to: configPath, what: "image config")
        let configuration = try decode(OCI.ImageConfiguration.self,
                                       Data(try FileDescriptor.open(configPath, O_RDONLY).readToEnd()), "image config of \(reference)")
        try OCI.checkPlatform(configuration, what: "image \(reference)")
        var layers: [ResolvedImage.Layer] = []
        for (number, descriptor) in target.manifest.layers.enumerated() {
            let what = "layer \(number + 1)/\(target.manifest.layers.count) (\(descriptor.digest.prefix(19)))"
            let encoding = try OCI.layerEncoding(descriptor.mediaType, what: what)
            let path = staging + "/layer-\(number)"
            progress?("pulling \(what), \(Self.megabytes(descriptor.size))")
            try await fetchBlob(descriptor, to: path, what: what)
            layers.append(.init(path: path, encoding: encoding, what: what))
        }
        progress?("building the EROFS image")
        return ResolvedImage(id: target.manifest.config.digest, manifestDigest: target.manifestDigest,
                             configuration: configuration, layers: layers, references: references)
    }

    // MARK: HTTP

    private func fetchBlob(_ descriptor: OCI.Descriptor, to path: String, what: String) async throws {
        try Digest.check(descriptor.digest, what: what)
        guard descriptor.size >= 0 else { throw registryError("\(what) has a negative size") }
        let request = try makeRequest("/blobs/" + descriptor.digest, accept: "*/*")
        let (downloaded, response) = try await send(request, what: what) { try await self.session.download(for: $0) }
        defer { try? FileManager.default.removeItem(at: downloaded) }
        try check(response, what: what)
        // Copy into the store's staging while hashing: the blob is verified exactly as stored.
        let input = try FileDescriptor.open(downloaded.path, O_RDONLY)
        let output = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        var source = DigestingSource(FileSource(file: input))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)
        defer { buffer.deallocate() }
        while true {
            let n = try source.read(into: buffer)
            if n == 0 { break }
            try output.writeAll(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            if source.count > descriptor.size { break }
        }
        let digest = source.digest()
        guard source.count == descriptor.size, digest == descriptor.digest else {
            throw StorageError(.digestMismatch, "\(what) from \(reference.registry) does not match its digest or size (expected \(descriptor.digest), \(descriptor.size) bytes; got \(digest), \(source.count) bytes); refusing it")
        }
    }

    private func get(_ path: String, accept: String, what: String) async throws -> (Data, HTTPURLResponse) {
        let (body, response) = try await send(try makeRequest(path, accept: accept), what: what) { try await self.session.data(for: $0) }
        try check(response, what: what)
        return (body, response)
    }

    private func makeRequest(_ path: String, accept: String) throws -> URLRequest {
        guard let url = URL(string: baseURL + "/v2/" + reference.repository + path) else {
            throw StorageError(.badInput, "cannot form a registry URL for \(reference)")
        }
        var request = URLRequest(url: url)
        request.timeoutInterval = timeout
        request.setValue(accept, forHTTPHeaderField: "Accept")
        if let token { request.setValue("Bearer " + token, forHTTPHeaderField: "Authorization") }
        return request
    }

    /// Sends once; on 401 with a Bearer challenge, fetches an anonymous token and retries.
    private func send<Body>(_ request: URLRequest, what: String,
                            _ perform: (URLRequest) async throws -> (Body, URLResponse)) async throws -> (Body, HTTPURLResponse) {
        var request = request
        for attempt in 0..<2 {
            let (body, response): (Body, URLResponse)
            do {
                (body, response) = try await perform(request)
            } catch let error as URLError {
                if error.code == .cancelled, let challenge = challenges.take() {
                    guard attempt == 0 else { break }
                    try await authenticate(challenge: challenge, what: what)
                    if let token { request.setValue("Bearer " + token, forHTTPHeaderField: "Authorization") }
                    continue
                }
                if error.code == .timedOut {
                    throw registryError("\(reference.registry) did not answer within \(Int(timeout))s while fetching \(what); check the registry or raise --timeout")
                }
                throw registryError("cannot reach \(reference.registry) for \(what): \(error.localizedDescription); check the address, or use --insecure for a plain-HTTP registry")
            }
            guard let http = response as? HTTPURLResponse else { throw registryError("\(reference.registry) gave a non-HTTP answer") }
            if http.statusCode == 401 && attempt == 0 {
                try await authenticate(challenge: http.value(forHTTPHeaderField: "WWW-Authenticate"), what: what)
                if let token { request.setValue("Bearer " + token, forHTTPHeaderField: "Authorization") }
                continue
            }
            return (body, http)
        }
        throw registryError("\(reference.registry) refused access to \(reference.repository) (HTTP 401) even with a token; the image may be private")
    }

    private func check(_ response: HTTPURLResponse, what: String) throws {
        switch response.statusCode {
        case 200..<300: return
        case 401, 403:
            throw registryError("\(reference.registry) refused access to \(what) (HTTP \(response.statusCode)); rund pulls anonymously, so the image must be public")
        case 404:
            throw StorageError(.notFound, "\(reference.registry) has no \(what) (HTTP 404); check the name and tag")
        default:
            throw registryError("\(reference.registry) answered HTTP \(response.statusCode) for \(what); try again later")
        }
    }

    /// Bearer token flow (Docker token spec): GET realm?service=..&scope=repository:NAME:pull.
    private func authenticate(challenge: String?, what: String) async throws {
        guard let challenge, challenge.lowercased().hasPrefix("bearer ") else {
            throw registryError("\(reference.registry) requires credentials for \(what) (HTTP 401); rund pulls anonymously, so the image must be public")
        }
        let parameters = Self.challengeParameters(String(challenge.dropFirst(7)))
        guard let realm = parameters["realm"], var components = URLComponents(string: realm) else {
            throw registryError("\(reference.registry) sent a bearer challenge without a realm")
        }
        var query = components.queryItems ?? []
        if let service = parameters["service"] { query.append(URLQueryItem(name: "service", value: service)) }
        query.append(URLQueryItem(name: "scope", value: parameters["scope"] ?? "repository:\(reference.repository):pull"))
        components.queryItems = query
        guard let url = components.url else { throw registryError("bad token realm '\(realm)'") }
        var request = URLRequest(url: url)
        request.timeoutInterval = timeout
        let (body, response): (Data, URLResponse)
        do {
            (body, response) = try await session.data(for: request)
        } catch {
            throw registryError("cannot get a token from \(realm): \(error.localizedDescription)")
        }
        guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
            throw registryError("token service \(realm) refused an anonymous token; the image may be private")
        }
        struct TokenResponse: Decodable {
            var token: String?
            var accessToken: String?
            enum CodingKeys: String, CodingKey { case token, accessToken = "access_token" }
        }
        guard let decoded = try? JSONDecoder().decode(TokenResponse.self, from: body),
              let value = decoded.token ?? decoded.accessToken else {
            throw registryError("token service \(realm) sent no token")
        }
        token = value
    }

    /// `realm="https://auth",service="registry",scope="repository:x:pull"`
    static func challengeParameters(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        var rest = Substring(text)
        while let equals = rest.firstIndex(of: "=") {
            let key = rest[..<equals].trimmingCharacters(in: CharacterSet(charactersIn: " ,"))
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "\"" {
                rest = rest.dropFirst()
                let end = rest.firstIndex(of: "\"") ?? rest.endIndex
                value = String(rest[..<end])
                rest = end < rest.endIndex ? rest[rest.index(after: end)...] : ""
            } else {
                let end = rest.firstIndex(of: ",") ?? rest.endIndex
                value = String(rest[..<end])
                rest = rest[end...]
            }
            result[key.lowercased()] = value
        }
        return result
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data, _ what: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: data) } catch {
            throw StorageError(.badInput, "\(what) is not a valid document; the registry served bad content")
        }
    }

    private func registryError(_ message: String) -> StorageError { StorageError(.registry, message) }

    static func megabytes(_ bytes: Int64) -> String { String(format: "%.1f MB", Double(bytes) / 1_000_000) }
}

/// swift-corelibs-foundation hands a 401 carrying WWW-Authenticate to the session delegate (and
/// hangs without one). Record the challenge and cancel: the client answers it itself.
private final class ChallengeRecorder: NSObject, URLSessionTaskDelegate, @unchecked Sendable {
    private let lock = NSLock()
    private var last: String?

    func urlSession(_ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
                    completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void) {
        let header = (challenge.failureResponse as? HTTPURLResponse)?.value(forHTTPHeaderField: "WWW-Authenticate")
        lock.withLock { last = header ?? "" }
        completionHandler(.cancelAuthenticationChallenge, nil)
    }

    /// The challenge recorded since the last call, if any.
    func take() -> String? {
        lock.withLock {
            defer { last = nil }
            return last
        }
    }
}
