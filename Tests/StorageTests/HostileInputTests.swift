import Foundation
import HostOS
import Testing
@testable import Storage

private let canBuild = Fixtures.isRoot && Fixtures.erofsTools && !Fixtures.busybox.isEmpty

/// Broken and malicious archives: each must fail with a one-line error and leave the store as it was.
@Suite(.enabled(if: canBuild, "needs root (mknod, chown), erofs-utils and busybox-static"))
struct HostileInputTests {
    /// Runs body on a bench (a store with one good image and a canary outside it); the good
    /// image must still be there afterwards.
    private func withStore(_ body: (ImageStore, HostileBench) throws -> Void) throws {
        let bench = try HostileBench()
        try body(bench.store, bench)
        #expect(try bench.store.lookup(reference: "good:1").layerCount == 1)
    }

    private func importError(
        _ store: ImageStore, _ bench: HostileBench, _ archive: [UInt8],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> StorageError? {
        try bench.refuse(archive, with: store, sourceLocation: sourceLocation)
    }

    private func layout(_ layers: [[UInt8]]) -> [UInt8] {
        Fixtures.ociLayout(layers: layers.map { .init(bytes: $0, uncompressed: $0) })
    }

    @Test func truncatedArchiveAndTruncatedLayer() throws {
        try withStore { store, bench in
            let archive = Fixtures.dockerSave(layers: [Fixtures.busyboxLayer()], tag: "t:1")
            let cut = Array(archive.prefix(archive.count / 2 + 100))
            #expect(try importError(store, bench, cut)?.kind == .badInput)
            // A layer cut short whose digest matches the cut bytes: caught by the tar reader.
            let layer = Fixtures.busyboxLayer()
            let shortLayer = Array(layer.prefix(layer.count / 3))
            let error = try importError(store, bench, Fixtures.ociLayout(layers: [.init(bytes: shortLayer, uncompressed: shortLayer)]))
            #expect(error?.message.contains("truncated") == true)
        }
    }

    @Test func digestAndSizeMismatches() throws {
        try withStore { store, bench in
            let layer = Fixtures.busyboxLayer()
            let tampered = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)]) { blobs in
                let key = Fixtures.digest(layer)
                blobs[key]![600] ^= 0xff
            }
            let tamperedError = try importError(store, bench, tampered)
            #expect(tamperedError?.kind == .digestMismatch)
            // diff_ids that do not match the uncompressed layer.
            var other = TarWriter()
            other.file("x", "y")
            let wrongConfig = Fixtures.configJSON(diffIDs: [Fixtures.digest(other.finish())])
            let wrong = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)], config: wrongConfig)
            let wrongError = try importError(store, bench, wrong)
            #expect(wrongError?.kind == .digestMismatch)
        }
    }

    @Test func unknownMediaTypeAndOtherPlatform() throws {
        try withStore { store, bench in
            let layer = Fixtures.busyboxLayer()
            let zstd = Fixtures.ociLayout(layers: [
                .init(bytes: layer, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", uncompressed: layer)
            ])
            #expect(try importError(store, bench, zstd)?.kind == .unsupported)
            let arm = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)], platform: (os: "linux", arch: "arm64"))
            let armError = try importError(store, bench, arm)
            #expect(armError?.kind == .unsupported && armError?.message.contains("linux/arm64") == true)
            let armConfig = Fixtures.configJSON(diffIDs: [Fixtures.digest(layer)], architecture: "arm64")
            let armImage = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)], config: armConfig)
            #expect(try importError(store, bench, armImage)?.kind == .unsupported)
            #expect(try importError(store, bench, Array("not a tar at all".utf8) + [UInt8](repeating: 7, count: 600))?.kind == .badInput)
        }
    }
}
