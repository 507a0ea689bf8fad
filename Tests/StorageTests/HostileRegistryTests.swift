import Foundation
import HostOS
import Testing
@testable import Storage

private func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Registries that lie: endless or oversized documents, blobs larger than declared, token
/// realms rund must not follow. Each pull fails with one line and leaves the store (and its
/// staging) as it was; bodies are cut off while they stream, not after.
@Suite(.timeLimit(.minutes(5)))
struct HostileRegistryTests {
    private static let manifestType = ["Content-Type": OCI.MediaType.ociManifest]

    private func pullError(
        _ store: ImageStore, _ server: BrokenRegistry, sourceLocation: SourceLocation = #_sourceLocation
    ) async -> StorageError? {
        let before = Fixtures.snapshot(store.root)
        defer {
            #expect(Fixtures.snapshot(store.root) == before, "the store changed", sourceLocation: sourceLocation)
            #expect(HostileBench.stagingLeft(store.root).isEmpty, "staging left behind", sourceLocation: sourceLocation)
        }
        do {
            _ = try await store.pull(reference: "\(server.address)/rund/x:1", insecure: true, timeout: 10)
            Issue.record("pull from a hostile registry succeeded", sourceLocation: sourceLocation)
            return nil
        } catch let error as StorageError {
            #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
            return error
        } catch {
            Issue.record("not a StorageError: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    private func store() throws -> (ImageStore, TemporaryDirectory) {
        let root = try TemporaryDirectory()
        let store = ImageStore(root: root.path)
        for directory in ["tmp", "locks"] { try FileSystem.makeDirectories(root.path + "/images/" + directory) }
        return (store, root)
    }

    /// A manifest whose config is `config` (declared with `declaredSize`) and no layers.
    private func manifest(config: [UInt8], declaredSize: Int? = nil, layers: [[String: Any]] = []) -> [UInt8] {
        Fixtures.json([
            "schemaVersion": 2, "mediaType": OCI.MediaType.ociManifest,
            "config": ["mediaType": OCI.MediaType.ociConfig, "digest": Fixtures.digest(config), "size": declaredSize ?? config.count],
            "layers": layers,
        ])
    }

    @Test func endlessAndOversizedManifests() async throws {
        let (store, root) = try store()
        _ = root
        let endless = try BrokenRegistry(.scripted { _, _ in .endless(headers: Self.manifestType) })
        defer { endless.stop() }
        let endlessError = await pullError(store, endless)
        #expect(
            endlessError?.kind == .limitExceeded && endlessError?.message.contains("larger than") == true,
            "\(String(describing: endlessError))")
        // A Content-Length over the limit is refused before the body is read.
        let announced = try BrokenRegistry(
            .scripted { _, _ in .endless(headers: Self.manifestType.merging(["Content-Length": "5242880"]) { $1 }) })
        defer { announced.stop() }
        #expect(await pullError(store, announced)?.kind == .limitExceeded)
    }

    @Test func blobsLargerThanDeclared() async throws {
        let (store, root) = try store()
        _ = root
        let config = Fixtures.configJSON(diffIDs: [])
        let document = manifest(config: config)
        // Streams past the declared size: cut off while writing.
        let endless = try BrokenRegistry(
            .scripted { target, _ in
                target.contains("/manifests/") ? .body(status: 200, headers: Self.manifestType, body: document) : .endless(headers: [:])
            })
        defer { endless.stop() }
        let error = await pullError(store, endless)
        #expect(
            error?.kind == .digestMismatch && error?.message.contains("larger than its declared") == true, "\(String(describing: error))")
        // Announces more than declared: refused before the first byte is written.
        let announced = try BrokenRegistry(
            .scripted { target, _ in
                target.contains("/manifests/")
                    ? .body(status: 200, headers: Self.manifestType, body: document)
                    : .endless(headers: ["Content-Length": "\(config.count + 1)"])
            })
        defer { announced.stop() }
        #expect(await pullError(store, announced)?.kind == .digestMismatch)
        // Declares sizes past the limits: refused before any download.
        let layer: [String: Any] = ["mediaType": OCI.MediaType.ociLayer, "digest": Fixtures.digest([1]), "size": (Int64(8) << 30) + 1]
        for (label, body) in [
            ("config over 4 MiB", manifest(config: config, declaredSize: (4 << 20) + 1)),
            ("layer over 8 GiB", manifest(config: config, layers: [layer])),
            ("negative config", manifest(config: config, declaredSize: -1)),
        ] {
            let server = try BrokenRegistry(
                .scripted { target, _ in
                    target.contains("/manifests/") ? .body(status: 200, headers: Self.manifestType, body: body) : .endless(headers: [:])
                })
            defer { server.stop() }
            #expect(await pullError(store, server)?.kind == .limitExceeded, "\(label)")
        }
    }

    @Test func tokenRealmsOnlyOverHTTPSOrOnThisHost() async throws {
        let (store, root) = try store()
        _ = root
        for realm in [
            "http://example.com/token", "http://127.0.0.1.example.com/token", "ftp://127.0.0.1/token",
            "file:///etc/passwd", "http://[::2]/token", "http://1270.0.0.1/token",
        ] {
            let server = try BrokenRegistry(.status(401, challenge: "Bearer realm=\"\(realm)\",service=\"x\""))
            defer { server.stop() }
            let error = await pullError(store, server)
            #expect(
                error?.kind == .registry && error?.message.contains("neither https nor on this host") == true,
                "\(realm): \(String(describing: error))")
        }
        #expect(RegistryClient.mayFetchToken(from: URL(string: "https://auth.docker.io/token")!))
        #expect(RegistryClient.mayFetchToken(from: URL(string: "http://127.0.0.1:5000/token")!))
        #expect(RegistryClient.mayFetchToken(from: URL(string: "http://localhost/token")!))
        #expect(RegistryClient.mayFetchToken(from: URL(string: "http://[::1]:5000/token")!))
    }

    @Test func hostileTokenServices() async throws {
        let (store, root) = try store()
        _ = root
        let replies: [(String, BrokenRegistry.Reply)] = [
            ("endless token body", .endless(headers: ["Content-Type": "application/json"])),
            ("token with a line break", .body(status: 200, headers: [:], body: utf8(#"{"token":"a\r\nX-Injected: 1"}"#))),
            ("no token", .body(status: 200, headers: [:], body: utf8("{}"))),
        ]
        for (label, reply) in replies {
            let server = try BrokenRegistry(
                .scripted { target, address in
                    target.hasPrefix("/token")
                        ? reply
                        : .body(status: 401, headers: ["WWW-Authenticate": "Bearer realm=\"http://\(address)/token\""], body: [])
                })
            defer { server.stop() }
            let error = await pullError(store, server)
            #expect(error?.kind == .limitExceeded || error?.kind == .registry, "\(label): \(String(describing: error))")
        }
    }

    /// The WWW-Authenticate parser on inputs a registry controls: never a trap, and quotes,
    /// escapes and separators mean what RFC 9110 says, on bytes.
    @Test func challengeParsingOnHostileHeaders() {
        let odd = [
            "", ",,,", "=", "==", "realm", "realm=", "realm=\"", "realm=\"\\", "\"", "a=\"b\\\"c\",d=e",
            "realm=\"/\u{301}\"", "\u{301}=\"x\"", "realm=\"x\"\u{301},service=y", String(repeating: "a=b,", count: 10_000),
        ]
        for header in odd { _ = RegistryClient.challengeParameters(header) }
        let escaped = RegistryClient.challengeParameters(#"a="b\"c",d=e"#)
        #expect(escaped == ["a": #"b"c"#, "d": "e"])
        let spaced = RegistryClient.challengeParameters(#"Realm = "x,y" , Service=z"#)
        #expect(spaced == ["realm": "x,y", "service": "z"])
        let unterminated = RegistryClient.challengeParameters(#"realm="unterminated"#)
        #expect(unterminated == ["realm": "unterminated"])
        #expect(RegistryClient.bearerParameters(#"Basic realm="x""#) == nil)
        #expect(RegistryClient.bearerParameters(#"BEARER realm="x""#) == ["realm": "x"])
        // A quote followed by a combining mark is still a quote (a Character parser saw one '"́').
        let marked = RegistryClient.challengeParameters("realm=\"\u{301}https://a\",service=s")
        #expect(marked["service"] == "s")
    }

    /// Digests and references from registries and archives become store paths, URLs and
    /// output lines: checked on bytes.
    @Test func digestsAndReferencesAreCheckedOnBytes() {
        // 64 Characters that each compare between "0" and "9", but are not hex bytes.
        #expect(!Digest.isValid("sha256:" + String(repeating: "0\u{301}", count: 64)))
        #expect(Digest.isValid("sha256:" + String(repeating: "0a", count: 32)))
        for bad in [
            "busybox:la\ntest", "busybox:-x", "evil\nhost:5000/app:1", "b\u{301}usybox", "busybox:" + String(repeating: "a", count: 129),
            "a//b",
        ] {
            #expect(throws: StorageError.self, "\(bad)") { try ImageReference(parsing: bad) }
        }
        #expect((try? ImageReference(parsing: "localhost:5000/rund/app_1:v1.2-rc"))?.description == "localhost:5000/rund/app_1:v1.2-rc")
    }
}
