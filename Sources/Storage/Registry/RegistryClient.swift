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
///
/// The registry is untrusted: every body is streamed through a sink that enforces its limit as
/// the bytes arrive (documents: `StorageLimits.documentBytes`; blobs: the descriptor's declared
/// size, checked against Content-Length before the first byte is written), blobs go straight
/// into the store's staging (never a temporary file elsewhere), and a token realm is only
/// contacted over https or on this host.
final class RegistryClient {
    struct Target {
        var manifest: OCI.Manifest
        var manifestDigest: String
    }

    private let reference: ImageReference
    private let baseURL: String
    private let session: URLSession
    private let timeout: Double
    private let limits: StorageLimits
    private let logger: Logger
    private var token: String?
    private let transfers = TransferDelegate()

    private static let manifestTypes = [
        OCI.MediaType.ociIndex, OCI.MediaType.ociManifest, OCI.MediaType.dockerManifestList, OCI.MediaType.dockerManifest,
    ].joined(separator: ", ")

    init(reference: ImageReference, insecure: Bool, timeout: Double, limits: StorageLimits = StorageLimits(), logger: Logger) {
        self.reference = reference
        let host = reference.registry == "docker.io" ? "registry-1.docker.io" : reference.registry
        baseURL = (insecure ? "http://" : "https://") + host
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        configuration.timeoutIntervalForResource = max(timeout, 3600)
        session = URLSession(configuration: configuration, delegate: transfers, delegateQueue: nil)
        self.timeout = timeout
        self.limits = limits
        self.logger = logger
    }

    deinit { session.finishTasksAndInvalidate() }

    /// Fetches the manifest, following an index to its linux/amd64 entry.
    func resolveManifest() async throws -> Target {
        var reference = self.reference.manifestReference
        var expected = self.reference.digest
        for _ in 0..<3 {
            let what = "manifest of \(self.reference)"
            let sink = MemorySink(limit: limits.documentBytes) { [limits] in
                StorageError(.limitExceeded, "\(what) is larger than \(limits.documentBytes) bytes; refusing it")
            }
            let response = try await get("/manifests/" + reference, accept: Self.manifestTypes, into: sink, what: what)
            let body = Data(sink.bytes)
            let digest = "sha256:" + SHA256.hash(sink.bytes)
            if let expected, expected != digest {
                throw StorageError(.digestMismatch, "\(what) has digest \(digest), expected \(expected); the registry served wrong content")
            }
            let mediaType = (response.value(forHTTPHeaderField: "Content-Type") ?? "").split(separator: ";").first.map(String.init)
            let declared =
                (try? JSONDecoder().decode(OCI.Index.self, from: body))?.mediaType
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
                throw StorageError(
                    .unsupported, "\(self.reference): unsupported manifest media type '\(type)'; rund reads OCI and Docker v2 manifests")
            }
            let manifest = try decode(OCI.Manifest.self, body, what)
            try Digest.check(manifest.config.digest, what: what)
            return Target(manifest: manifest, manifestDigest: digest)
        }
        throw registryError("image index of \(self.reference) nests too deeply")
    }

    /// Downloads config and layers into `staging`, verifying each blob.
    func download(
        _ target: Target, into staging: String, references: [String],
        progress: (@Sendable (String) -> Void)?
    ) async throws -> ResolvedImage {
        try checkDeclaredSizes(target.manifest)
        let configPath = staging + "/config.json"
        try await fetchBlob(target.manifest.config, to: configPath, what: "image config")
        let configBytes = try FileDescriptor.open(configPath, O_RDONLY).readToEnd(limit: limits.documentBytes)
        let configuration = try decode(OCI.ImageConfiguration.self, Data(configBytes), "image config of \(reference)")
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
        return ResolvedImage(
            id: target.manifest.config.digest, manifestDigest: target.manifestDigest,
            configuration: configuration, layers: layers, references: references)
    }

    /// What the manifest declares, checked against the limits before anything is downloaded.
    private func checkDeclaredSizes(_ manifest: OCI.Manifest) throws {
        let what = "manifest of \(reference)"
        guard manifest.config.size >= 0, manifest.config.size <= Int64(limits.documentBytes) else {
            throw StorageError(
                .limitExceeded, "\(what) declares an image config of \(manifest.config.size) bytes; the limit is \(limits.documentBytes)")
        }
        try OCI.checkLayerCount(manifest.layers.count, limits: limits, what: what)
        var total: Int64 = 0
        for descriptor in manifest.layers {
            guard descriptor.size >= 0, descriptor.size <= limits.layerBytes else {
                throw StorageError(
                    .limitExceeded, "\(what) declares a layer of \(descriptor.size) bytes; the limit is \(limits.layerBytes)")
            }
            let (sum, overflow) = total.addingReportingOverflow(descriptor.size)
            total = sum
            guard !overflow, total <= limits.imageBytes else {
                throw StorageError(.limitExceeded, "\(what) declares more than \(limits.imageBytes) bytes of layers; refusing it")
            }
        }
    }

    // MARK: HTTP

    private func fetchBlob(_ descriptor: OCI.Descriptor, to path: String, what: String) async throws {
        try Digest.check(descriptor.digest, what: what)
        guard descriptor.size >= 0 else { throw registryError("\(what) has a negative size") }
        let registry = reference.registry
        let sink = try FileSink(path: path, declaredSize: descriptor.size) { got in
            StorageError(
                .digestMismatch,
                "\(what) from \(registry) is larger than its declared \(descriptor.size) bytes (at least \(got)); refusing it")
        }
        _ = try await get("/blobs/" + descriptor.digest, accept: "*/*", into: sink, what: what)
        let digest = sink.digest()
        guard sink.count == descriptor.size, digest == descriptor.digest else {
            throw StorageError(
                .digestMismatch,
                "\(what) from \(reference.registry) does not match its digest or size (expected \(descriptor.digest), \(descriptor.size) bytes; got \(digest), \(sink.count) bytes); refusing it"
            )
        }
    }

    private func get(_ path: String, accept: String, into sink: BodySink, what: String) async throws -> HTTPURLResponse {
        let response = try await send(try makeRequest(path, accept: accept), into: sink, what: what)
        try check(response, what: what)
        return response
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
    private func send(_ request: URLRequest, into sink: BodySink, what: String) async throws -> HTTPURLResponse {
        var request = request
        for attempt in 0..<2 {
            let outcome: TransferDelegate.Outcome
            do {
                try sink.reset()
                outcome = try await transfers.perform(session.dataTask(with: request), into: sink)
            } catch let error as URLError {
                if error.code == .timedOut {
                    throw StorageError(
                        .registryTimedOut, "\(reference.registry) did not answer within \(Self.seconds(timeout)) while fetching \(what)")
                }
                throw StorageError(.registryUnreachable, "cannot reach \(reference.registry) for \(what): \(error.localizedDescription)")
            }
            let challenge: String?
            switch outcome {
            case .challenge(let header):
                challenge = header
            case .response(let http):
                guard http.statusCode == 401 else { return http }
                challenge = http.value(forHTTPHeaderField: "WWW-Authenticate")
            }
            guard attempt == 0 else { break }
            try await authenticate(challenge: challenge, what: what)
            if let token { request.setValue("Bearer " + token, forHTTPHeaderField: "Authorization") }
        }
        throw registryError(
            "\(reference.registry) refused access to \(reference.repository) (HTTP 401) even with a token; the image may be private")
    }

    private func check(_ response: HTTPURLResponse, what: String) throws {
        switch response.statusCode {
        case 200..<300: return
        case 401, 403:
            throw registryError(
                "\(reference.registry) refused access to \(what) (HTTP \(response.statusCode)); rund pulls anonymously, so the image must be public"
            )
        case 404:
            throw StorageError(.notFound, "\(reference.registry) has no \(what) (HTTP 404); check the name and tag")
        default:
            throw registryError("\(reference.registry) answered HTTP \(response.statusCode) for \(what); try again later")
        }
    }

    /// Bearer token flow (Docker token spec): GET realm?service=..&scope=repository:NAME:pull.
    private func authenticate(challenge: String?, what: String) async throws {
        guard let challenge, let parameters = Self.bearerParameters(challenge) else {
            throw registryError(
                "\(reference.registry) requires credentials for \(what) (HTTP 401); rund pulls anonymously, so the image must be public")
        }
        guard let realm = parameters["realm"], var components = URLComponents(string: realm) else {
            throw registryError("\(reference.registry) sent a bearer challenge without a realm")
        }
        var query = components.queryItems ?? []
        if let service = parameters["service"] { query.append(URLQueryItem(name: "service", value: service)) }
        query.append(URLQueryItem(name: "scope", value: parameters["scope"] ?? "repository:\(reference.repository):pull"))
        components.queryItems = query
        guard let url = components.url else { throw registryError("bad token realm '\(realm)'") }
        guard Self.mayFetchToken(from: url) else {
            throw registryError(
                "\(reference.registry) sent token realm '\(realm)', which is neither https nor on this host; refusing to fetch a token from it"
            )
        }
        var request = URLRequest(url: url)
        request.timeoutInterval = timeout
        let sink = MemorySink(limit: limits.documentBytes) { [limits] in
            StorageError(.limitExceeded, "token service \(realm) sent more than \(limits.documentBytes) bytes; refusing it")
        }
        let outcome: TransferDelegate.Outcome
        do {
            outcome = try await transfers.perform(session.dataTask(with: request), into: sink)
        } catch let error as URLError {
            throw registryError("cannot get a token from \(realm): \(error.localizedDescription)")
        }
        guard case .response(let http) = outcome, http.statusCode == 200 else {
            throw registryError("token service \(realm) refused an anonymous token; the image may be private")
        }
        struct TokenResponse: Decodable {
            var token: String?
            var accessToken: String?
            enum CodingKeys: String, CodingKey { case token, accessToken = "access_token" }
        }
        // The token goes into a header: visible ASCII only, or it could smuggle in another header.
        guard let decoded = try? JSONDecoder().decode(TokenResponse.self, from: Data(sink.bytes)),
            let value = decoded.token ?? decoded.accessToken, !value.isEmpty,
            value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f })
        else {
            throw registryError("token service \(realm) sent no usable token")
        }
        token = value
    }

    /// A token request goes over https, or plain http only to this host (a local test registry):
    /// a registry cannot send rund to fetch from an arbitrary plain-http address.
    static func mayFetchToken(from url: URL) -> Bool {
        switch url.scheme?.lowercased() {
        case "https": return true
        case "http": return url.host.map(isLoopback) ?? false
        default: return false
        }
    }

    /// localhost, 127.0.0.0/8 written as a dotted quad, or ::1.
    static func isLoopback(_ host: String) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("[") && name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if name == "localhost" || name == "::1" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4,
            octets.allSatisfy({ octet in
                !octet.isEmpty && octet.utf8.count <= 3 && octet.utf8.allSatisfy { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }
                    && (Int(octet) ?? 256) <= 255
            })
        else { return false }
        return octets[0] == "127"
    }

    /// The parameters of a `Bearer` challenge, or nil for any other scheme.
    static func bearerParameters(_ challenge: String) -> [String: String]? {
        let bytes = Array(challenge.utf8)
        let scheme = Array("bearer ".utf8)
        guard bytes.count >= scheme.count, zip(bytes, scheme).allSatisfy({ asciiLowercase($0) == $1 }) else { return nil }
        return challengeParameters(String(decoding: bytes.dropFirst(scheme.count), as: UTF8.self))
    }

    /// `realm="https://auth",service="registry",scope="repository:x:pull"`: auth-params (RFC 9110)
    /// parsed on bytes, quoted strings with backslash escapes; keys lower-cased. Never traps, and
    /// every step consumes input, so any header ends.
    static func challengeParameters(_ text: String) -> [String: String] {
        let bytes = Array(text.utf8)
        var result: [String: String] = [:]
        var index = 0
        func skip(_ set: [UInt8]) { while index < bytes.count, set.contains(bytes[index]) { index += 1 } }
        let separators = Array(" \t,".utf8)
        while index < bytes.count {
            skip(separators)
            let keyStart = index
            while index < bytes.count, !Array("=, \t".utf8).contains(bytes[index]) { index += 1 }
            let key = bytes[keyStart..<index].map(asciiLowercase)
            skip(Array(" \t".utf8))
            guard index < bytes.count, bytes[index] == UInt8(ascii: "=") else {
                // A bare token (or the end): skip to the next parameter.
                while index < bytes.count, bytes[index] != UInt8(ascii: ",") { index += 1 }
                continue
            }
            index += 1
            skip(Array(" \t".utf8))
            var value: [UInt8] = []
            if index < bytes.count, bytes[index] == UInt8(ascii: "\"") {
                index += 1
                while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
                    if bytes[index] == UInt8(ascii: "\\"), index + 1 < bytes.count { index += 1 }
                    value.append(bytes[index])
                    index += 1
                }
                index += 1  // The closing quote (or past the end of an unterminated one).
            } else {
                while index < bytes.count, bytes[index] != UInt8(ascii: ",") {
                    value.append(bytes[index])
                    index += 1
                }
                while let last = value.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { value.removeLast() }
            }
            if !key.isEmpty { result[String(decoding: key, as: UTF8.self)] = String(decoding: value, as: UTF8.self) }
        }
        return result
    }

    private static func asciiLowercase(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte + 32 : byte
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data, _ what: String) throws -> T {
        do { return try JSONDecoder().decode(type, from: data) } catch {
            throw StorageError(.badInput, "\(what) is not a valid document; the registry served bad content")
        }
    }

    private func registryError(_ message: String) -> StorageError { StorageError(.registry, message) }

    static func megabytes(_ bytes: Int64) -> String { String(format: "%.1f MB", Double(bytes) / 1_000_000) }

    /// "60s"; any Double (even infinite or NaN from a caller) formats without trapping.
    static func seconds(_ value: Double) -> String { String(format: "%gs", value) }
}

// MARK: Streaming bodies

/// Where a response body goes, chunk by chunk as it arrives; throwing stops the transfer.
protocol BodySink: AnyObject {
    /// Called before the first byte with the announced Content-Length, if any.
    func expect(length: Int64) throws
    func accept(_ data: Data) throws
    /// Starts over (the request is being sent again, after authenticating).
    func reset() throws
}

/// A small document, kept in memory up to `limit` bytes.
final class MemorySink: BodySink {
    private(set) var bytes: [UInt8] = []
    private let limit: Int
    private let tooLarge: () -> StorageError

    init(limit: Int, tooLarge: @escaping () -> StorageError) {
        self.limit = limit
        self.tooLarge = tooLarge
    }

    func expect(length: Int64) throws {
        if length > Int64(limit) { throw tooLarge() }
    }

    func accept(_ data: Data) throws {
        guard data.count <= limit - bytes.count else { throw tooLarge() }
        bytes.append(contentsOf: data)
    }

    func reset() throws { bytes = [] }
}

/// A blob, written into the store's staging and hashed as it arrives; more than the declared
/// size stops it.
final class FileSink: BodySink {
    private let path: String
    private let declaredSize: Int64
    private let tooLarge: (Int64) -> StorageError
    private var file: FileDescriptor
    private var hasher = SHA256()
    private(set) var count: Int64 = 0

    init(path: String, declaredSize: Int64, tooLarge: @escaping (Int64) -> StorageError) throws {
        self.path = path
        self.declaredSize = declaredSize
        self.tooLarge = tooLarge
        file = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600)
    }

    func expect(length: Int64) throws {
        if length > declaredSize { throw tooLarge(length) }
    }

    func accept(_ data: Data) throws {
        guard Int64(data.count) <= declaredSize - count else { throw tooLarge(count + Int64(data.count)) }
        try data.withUnsafeBytes { try file.writeAll($0) }
        hasher.update(Array(data))
        count += Int64(data.count)
    }

    func reset() throws {
        file = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, mode: 0o600)
        hasher = SHA256()
        count = 0
    }

    func digest() -> String { "sha256:" + hasher.finalizeHex() }
}

/// The session delegate: runs each data task to completion, feeding its body to a sink, and
/// answers authentication challenges by cancelling (swift-corelibs-foundation hands a 401 that
/// carries WWW-Authenticate to the delegate, and hangs without one; the client answers it).
private final class TransferDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    enum Outcome {
        case response(HTTPURLResponse)
        /// A 401 whose WWW-Authenticate header (possibly empty) the client must answer.
        case challenge(String)
    }

    private struct Transfer {
        var sink: BodySink
        var continuation: CheckedContinuation<Outcome, Error>
        var response: HTTPURLResponse?
        var challenge: String?
        var failure: Error?
    }

    private let lock = NSLock()
    private var transfers: [Int: Transfer] = [:]

    func perform(_ task: URLSessionDataTask, into sink: BodySink) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            lock.withLock { transfers[task.taskIdentifier] = Transfer(sink: sink, continuation: continuation) }
            task.resume()
        }
    }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
        completionHandler: @escaping (URLSession.AuthChallengeDisposition, URLCredential?) -> Void
    ) {
        let header = (challenge.failureResponse as? HTTPURLResponse)?.value(forHTTPHeaderField: "WWW-Authenticate")
        lock.withLock { transfers[task.taskIdentifier]?.challenge = header ?? "" }
        completionHandler(.cancelAuthenticationChallenge, nil)
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        let keep: Bool = lock.withLock {
            guard var transfer = transfers[dataTask.taskIdentifier] else { return false }
            defer { transfers[dataTask.taskIdentifier] = transfer }
            guard let http = response as? HTTPURLResponse else {
                transfer.failure = StorageError(.registry, "\(response.url?.host ?? "the registry") gave a non-HTTP answer")
                return false
            }
            transfer.response = http
            // Error bodies are never read: the status says enough, and they are unbounded.
            guard (200..<300).contains(http.statusCode) else { return false }
            do {
                try transfer.sink.expect(length: response.expectedContentLength)
            } catch {
                transfer.failure = error
                return false
            }
            return true
        }
        completionHandler(keep ? .allow : .cancel)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        let failed: Bool = lock.withLock {
            guard var transfer = transfers[dataTask.taskIdentifier], transfer.failure == nil else { return true }
            do {
                try transfer.sink.accept(data)
                return false
            } catch {
                transfer.failure = error
                transfers[dataTask.taskIdentifier] = transfer
                return true
            }
        }
        if failed { dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        guard let transfer = lock.withLock({ transfers.removeValue(forKey: task.taskIdentifier) }) else { return }
        if let failure = transfer.failure {
            transfer.continuation.resume(throwing: failure)
        } else if let response = transfer.response, error == nil || !(200..<300).contains(response.statusCode) {
            transfer.continuation.resume(returning: .response(response))
        } else if let challenge = transfer.challenge {
            transfer.continuation.resume(returning: .challenge(challenge))
        } else if let error {
            transfer.continuation.resume(throwing: error)
        } else {
            transfer.continuation.resume(throwing: URLError(.badServerResponse))
        }
    }
}
