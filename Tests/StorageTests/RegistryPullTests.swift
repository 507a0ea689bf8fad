import Foundation
import HostOS
import Testing
@testable import Storage

private let canPull =
    Fixtures.isRoot && Fixtures.erofsTools && !Fixtures.busybox.isEmpty
    && Fixtures.hasTool("docker-registry") && Fixtures.hasTool("skopeo")

/// Pulls from a real registry (Debian's docker-registry), images pushed by skopeo.
@Suite(.enabled(if: canPull, "needs root, erofs-utils, busybox-static, docker-registry and skopeo"))
struct RegistryPullTests {
    /// busybox (uncompressed) + whiteouts (gzip), pushed as a linux/amd64 + linux/arm64 index.
    /// skopeo gzips uncompressed layers on the way, so the amd64 manifest digest is read back
    /// from the registry's index.
    private func pushMultiPlatform(
        _ registry: LocalRegistry, _ scratch: TemporaryDirectory, name: String
    ) throws
        -> (amd64Manifest: String, amd64Config: String)
    {
        let lower = Fixtures.busyboxLayer()
        let upper = Fixtures.whiteoutLayer()
        let layout = Fixtures.multiPlatformLayout(layers: [
            .init(bytes: lower, uncompressed: lower),
            .init(bytes: try Fixtures.gzip(upper, in: scratch), mediaType: OCI.MediaType.ociLayerGzip, uncompressed: upper),
        ])
        try registry.push(try scratch.write("multi.tar", layout.tar), as: name, all: true)
        let index = try registry.rawManifest(name)
        let manifests = index["manifests"] as? [[String: Any]] ?? []
        let amd64 = manifests.first { ($0["platform"] as? [String: Any])?["architecture"] as? String == "amd64" }
        return (amd64?["digest"] as? String ?? "none", layout.amd64Config)
    }

    @Test func pullResolvesIndexVerifiesAndBuilds() async throws {
        let registry = try LocalRegistry()
        defer { registry.stop() }
        let scratch = try TemporaryDirectory()
        let root = try TemporaryDirectory()
        let pushed = try pushMultiPlatform(registry, scratch, name: "rund/multi:1")
        let store = ImageStore(root: root.path)
        let image = try await store.pull(reference: "\(registry.address)/rund/multi:1", insecure: true)
        #expect(image.id == pushed.amd64Config)
        #expect(image.manifestDigest == pushed.amd64Manifest)
        #expect(image.references == ["\(registry.address)/rund/multi:1"])
        #expect(image.layerCount == 2)

        // The same layers imported from the archive give the same tree.
        let imported = try ImageStore(root: root.path + "/other").import(
            path: try scratch.write(
                "local.tar",
                Fixtures.ociLayout(layers: [
                    .init(bytes: Fixtures.busyboxLayer(), uncompressed: Fixtures.busyboxLayer()),
                    .init(bytes: Fixtures.whiteoutLayer(), uncompressed: Fixtures.whiteoutLayer()),
                ])))
        let pulledTree = try Fixtures.withMountedEROFS(image.erofsPath) { try TreeListing.of($0) }
        let importedTree = try Fixtures.withMountedEROFS(imported.erofsPath) { try TreeListing.of($0) }
        #expect(pulledTree == importedTree)
        #expect(pulledTree.contains { $0.hasPrefix("opt/new ") } && !pulledTree.contains { $0.hasPrefix("etc/passwd ") })

        // Pinned by digest: found in the store, no second build.
        let pinned = try await store.pull(reference: "\(registry.address)/rund/multi@\(pushed.amd64Manifest)", insecure: true)
        #expect(pinned.id == image.id && pinned.createdAt == image.createdAt)
    }

    @Test func concurrentPullsBuildOnce() async throws {
        let registry = try LocalRegistry()
        defer { registry.stop() }
        let root = try TemporaryDirectory()
        // This image's layers are served uncompressed (the other test's are gzip), as a plain manifest.
        let layers = [Fixtures.busyboxLayer(), Fixtures.whiteoutLayer()]
        let config = Fixtures.configJSON(diffIDs: layers.map(Fixtures.digest))
        let manifest = Fixtures.manifestJSON(config: config, layers: layers.map { .init(bytes: $0, uncompressed: $0) })
        try await registry.pushRaw(
            name: "rund/same", tag: "1", blobs: layers + [config], manifest: manifest, mediaType: OCI.MediaType.ociManifest)
        let served = try registry.rawManifest("rund/same:1")
        let types = (served["layers"] as? [[String: Any]] ?? []).compactMap { $0["mediaType"] as? String }
        #expect(types == [OCI.MediaType.ociLayer, OCI.MediaType.ociLayer])
        let store = ImageStore(root: root.path)
        let reference = "\(registry.address)/rund/same:1"
        async let first = store.pull(reference: reference, insecure: true)
        async let second = store.pull(reference: reference, insecure: true)
        let images = try await [first, second]
        #expect(images[0].id == Fixtures.digest(config) && images[0].manifestDigest == Fixtures.digest(manifest))
        #expect(images[0].id == images[1].id && images[0].createdAt == images[1].createdAt)
        #expect(try store.list().count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path + "/images/tmp").isEmpty)
    }

    @Test func otherPlatformAndMissingTagLeaveStoreUnchanged() async throws {
        let registry = try LocalRegistry()
        defer { registry.stop() }
        let scratch = try TemporaryDirectory()
        let root = try TemporaryDirectory()
        let layer = Fixtures.busyboxLayer()
        let armConfig = Fixtures.configJSON(diffIDs: [Fixtures.digest(layer)], architecture: "arm64")
        let arm = Fixtures.ociLayout(
            layers: [.init(bytes: layer, uncompressed: layer)], config: armConfig, platform: (os: "linux", arch: "arm64"))
        try registry.push(try scratch.write("arm.tar", arm), as: "rund/arm:1")
        let store = ImageStore(root: root.path)
        for directory in ["tmp", "locks"] { try FileSystem.makeDirectories(root.path + "/images/" + directory) }
        let before = Fixtures.snapshot(root.path)
        let armError = await pullError(store, "\(registry.address)/rund/arm:1")
        #expect(armError?.kind == .unsupported && armError?.message.contains("arm64") == true)
        #expect(await pullError(store, "\(registry.address)/rund/arm:missing")?.kind == .notFound)
        #expect(await pullError(store, "\(registry.address)/rund/arm:1", insecure: false)?.kind == .registryUnreachable)
        #expect(Fixtures.snapshot(root.path) == before)
    }

    /// The time limit only catches a pull that never gives up on a hanging registry.
    @Test(.timeLimit(.minutes(2))) func brokenRegistriesGiveOneLineErrors() async throws {
        let root = try TemporaryDirectory()
        let store = ImageStore(root: root.path)
        let before = Fixtures.snapshot(root.path)
        let cases: [(BrokenRegistry.Behaviour, StorageError.Kind, String)] = [
            (.status(401, challenge: "Basic realm=\"x\""), .registry, "anonymously"),
            (.status(401, challenge: nil), .registry, "anonymously"),
            (.status(401, challenge: "Bearer realm=\"http://127.0.0.1:9/token\",service=\"x\""), .registry, "token"),
            (.status(404, challenge: nil), .notFound, "404"),
            (.status(500, challenge: nil), .registry, "500"),
            (.hang, .registryTimedOut, "did not answer"),
        ]
        for (behaviour, kind, words) in cases {
            let server = try BrokenRegistry(behaviour)
            defer { server.stop() }
            // Only the hanging registry is meant to time out; the others get time to answer on a loaded machine.
            let isHang = if case .hang = behaviour { true } else { false }
            let error = await pullError(store, "\(server.address)/rund/x:1", timeout: isHang ? 1 : 30)
            #expect(error?.kind == kind && error?.message.contains(words) == true, "\(behaviour): \(String(describing: error))")
        }
        #expect(Fixtures.snapshot(root.path) == before)
    }

    @Test func bearerTokenFlowAgainstRealContent() async throws {
        let registry = try LocalRegistry()
        defer { registry.stop() }
        let scratch = try TemporaryDirectory()
        let root = try TemporaryDirectory()
        let pushed = try pushMultiPlatform(registry, scratch, name: "rund/private:1")
        let gate = try BrokenRegistry(.tokenGate(upstream: registry.address))
        defer { gate.stop() }
        let image = try await ImageStore(root: root.path).pull(reference: "\(gate.address)/rund/private:1", insecure: true, timeout: 10)
        #expect(image.id == pushed.amd64Config)
        #expect(gate.tokenRequests == 1, "one token, reused for every request")
    }

    @Test func bearerChallengeParsing() {
        let parameters = RegistryClient.challengeParameters(
            #"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#)
        #expect(parameters["realm"] == "https://auth.docker.io/token")
        #expect(parameters["service"] == "registry.docker.io")
        #expect(parameters["scope"] == "repository:library/busybox:pull")
    }

    private func pullError(_ store: ImageStore, _ reference: String, insecure: Bool = true, timeout: Double = 10) async -> StorageError? {
        do {
            _ = try await store.pull(reference: reference, insecure: insecure, timeout: timeout)
            Issue.record("pull of \(reference) succeeded")
            return nil
        } catch let error as StorageError {
            #expect(!error.description.contains("\n"))
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }
}
