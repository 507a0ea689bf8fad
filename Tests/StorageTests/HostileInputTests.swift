import Foundation
import HostOS
import Testing
@testable import Storage

private let canBuild = Fixtures.isRoot && Fixtures.erofsTools && !Fixtures.busybox.isEmpty

/// Broken and malicious archives: each must fail with a one-line error and leave the store as it was.
@Suite(.enabled(if: canBuild, "needs root (mknod, chown), erofs-utils and busybox-static"))
struct HostileInputTests {
    /// A store holding one good image, and a scratch directory for archives.
    private func withStore(_ body: (ImageStore, TemporaryDirectory) throws -> Void) throws {
        let root = try TemporaryDirectory()
        let scratch = try TemporaryDirectory()
        let store = ImageStore(root: root.path)
        let good = Fixtures.busyboxLayer()
        try store.import(path: try scratch.write("good.tar", Fixtures.dockerSave(layers: [good], tag: "good:1")))
        let before = Fixtures.snapshot(root.path)
        try body(store, scratch)
        #expect(Fixtures.snapshot(root.path) == before, "the store changed")
        #expect(try store.lookup(reference: "good:1").layerCount == 1)
    }

    /// Imports `archive` and returns the error, checking it is a one-line StorageError.
    private func importError(_ store: ImageStore, _ scratch: TemporaryDirectory, _ archive: [UInt8],
                             sourceLocation: SourceLocation = #_sourceLocation) throws -> StorageError? {
        let path = try scratch.write("bad-\(UInt32.random(in: 0...UInt32.max)).tar", archive)
        do {
            try store.import(path: path)
            Issue.record("import of a bad archive succeeded", sourceLocation: sourceLocation)
            return nil
        } catch let error as StorageError {
            #expect(!error.description.contains("\n"), sourceLocation: sourceLocation)
            return error
        }
    }

    private func layout(_ layers: [[UInt8]]) -> [UInt8] {
        Fixtures.ociLayout(layers: layers.map { .init(bytes: $0, uncompressed: $0) })
    }

    @Test func truncatedArchiveAndTruncatedLayer() throws {
        try withStore { store, scratch in
            let archive = Fixtures.dockerSave(layers: [Fixtures.busyboxLayer()], tag: "t:1")
            let cut = Array(archive.prefix(archive.count / 2 + 100))
            #expect(try importError(store, scratch, cut)?.kind == .badInput)
            // A layer cut short whose digest matches the cut bytes: caught by the tar reader.
            let layer = Fixtures.busyboxLayer()
            let shortLayer = Array(layer.prefix(layer.count / 3))
            let error = try importError(store, scratch, Fixtures.ociLayout(layers: [.init(bytes: shortLayer, uncompressed: shortLayer)]))
            #expect(error?.message.contains("truncated") == true)
        }
    }

    @Test func digestAndSizeMismatches() throws {
        try withStore { store, scratch in
            let layer = Fixtures.busyboxLayer()
            let tampered = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)]) { blobs in
                let key = Fixtures.digest(layer)
                blobs[key]![600] ^= 0xff
            }
            let tamperedError = try importError(store, scratch, tampered)
            #expect(tamperedError?.kind == .digestMismatch)
            // diff_ids that do not match the uncompressed layer.
            var other = TarWriter()
            other.file("x", "y")
            let wrongConfig = Fixtures.configJSON(diffIDs: [Fixtures.digest(other.finish())])
            let wrong = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)], config: wrongConfig)
            let wrongError = try importError(store, scratch, wrong)
            #expect(wrongError?.kind == .digestMismatch)
        }
    }

    @Test func pathTraversalIsRefused() throws {
        let escapeName = "rund-escape-\(UInt32.random(in: 0...UInt32.max))"
        try withStore { store, scratch in
            var cases: [[[UInt8]]] = []
            var dotdot = TarWriter(); dotdot.file("../../../../../../../../tmp/" + escapeName, "x")
            var inner = TarWriter(); inner.directory("a/"); inner.file("a/../../" + escapeName, "x")
            var absolute = TarWriter(); absolute.file("/tmp/" + escapeName, "x")
            var outsideLink = TarWriter(); outsideLink.symlink("up", to: "../../../../tmp")
            var outsideHardLink = TarWriter(); outsideHardLink.hardLink("passwd", to: "../../../../etc/passwd")
            var throughLink = TarWriter(); throughLink.symlink("lnk", to: "/tmp"); throughLink.file("lnk/" + escapeName, "x")
            cases += [[dotdot.finish()], [inner.finish()], [absolute.finish()], [outsideLink.finish()], [outsideHardLink.finish()],
                      [throughLink.finish()]]
            // The symlink in one layer, the write through it in the next.
            var lower = TarWriter(); lower.symlink("etc", to: "/tmp")
            var upper = TarWriter(); upper.file("etc/" + escapeName, "x")
            cases.append([lower.finish(), upper.finish()])
            for layers in cases {
                let error = try importError(store, scratch, layout(layers))
                #expect(error?.kind == .badInput, "\(String(describing: error))")
                #expect(!FileManager.default.fileExists(atPath: "/tmp/" + escapeName))
            }
        }
    }

    @Test func unknownMediaTypeAndOtherPlatform() throws {
        try withStore { store, scratch in
            let layer = Fixtures.busyboxLayer()
            let zstd = Fixtures.ociLayout(layers: [.init(bytes: layer, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", uncompressed: layer)])
            #expect(try importError(store, scratch, zstd)?.kind == .unsupported)
            let arm = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)], platform: (os: "linux", arch: "arm64"))
            let armError = try importError(store, scratch, arm)
            #expect(armError?.kind == .unsupported && armError?.message.contains("linux/arm64") == true)
            let armConfig = Fixtures.configJSON(diffIDs: [Fixtures.digest(layer)], architecture: "arm64")
            let armImage = Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)], config: armConfig)
            #expect(try importError(store, scratch, armImage)?.kind == .unsupported)
            #expect(try importError(store, scratch, Array("not a tar at all".utf8) + [UInt8](repeating: 7, count: 600))?.kind == .badInput)
        }
    }
}
