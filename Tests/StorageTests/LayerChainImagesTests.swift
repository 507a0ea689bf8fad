#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HostOS
import Testing
@testable import Storage

/// containerd's overlayfs snapshot layers (a lower chain) become one EROFS, once, with the
/// layers merged as the container sees them; nothing is left mounted or staged.
@Suite(
    .enabled(if: Fixtures.erofsTools, "needs mkfs.erofs (apt-get install erofs-utils)"),
    .enabled(if: Fixtures.isRoot, "needs root: overlayfs merges the layers"))
struct LayerChainImagesTests {
    /// Two layers as the overlayfs snapshotter unpacks them: the upper one deletes a file of
    /// the lower (a whiteout: char device 0:0) and replaces a directory (opaque).
    static func layers(in directory: TemporaryDirectory) throws -> [String] {
        let lower = directory.path + "/1/fs", upper = directory.path + "/2/fs"
        for path in [lower + "/etc/old", upper + "/etc/old"] { try FileSystem.makeDirectories(path) }
        _ = try directory.write("1/fs/etc/gone", Array("gone\n".utf8))
        _ = try directory.write("1/fs/etc/kept", Array("kept\n".utf8))
        _ = try directory.write("1/fs/etc/old/stale", Array("stale\n".utf8))
        _ = try directory.write("2/fs/etc/new", Array("new\n".utf8))
        _ = try directory.write("2/fs/etc/old/fresh", Array("fresh\n".utf8))
        guard mknod(upper + "/etc/gone", S_IFCHR | 0o000, 0) == 0 else { throw SystemError.last("mknod") }
        try FileSystem.setExtendedAttribute(
            on: try FileDescriptor.openDirectory(upper + "/etc/old"), name: "trusted.overlay.opaque", value: Array("y".utf8))
        return [upper, lower]  // Top-most first, as lowerdir= lists them.
    }

    @Test func theChainIsMergedOnceIntoOneEROFS() throws {
        let root = try TemporaryDirectory(), snapshots = try TemporaryDirectory()
        let lowers = try Self.layers(in: snapshots)
        let chains = LayerChainImages(root: root.path)
        let image = try chains.image(lowers: lowers)
        let built = try FileSystem.status(at: nil, image)
        try Fixtures.withMountedEROFS(image) { mounted in
            let entries = try FileManager.default.contentsOfDirectory(atPath: mounted + "/etc").sorted()
            #expect(entries == ["kept", "new", "old"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: mounted + "/etc/old") == ["fresh"])
        }
        // Built once: the next sandbox of the same chain gets the same file, untouched.
        #expect(try chains.image(lowers: lowers) == image)
        #expect(try FileSystem.status(at: nil, image)?.st_ino == built?.st_ino)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path + "/layer-chains/tmp") == [])
        #expect(
            !(String(decoding: try FileDescriptor.open("/proc/self/mountinfo", O_RDONLY).readToEnd(), as: UTF8.self)).contains(root.path))
        // A chain made again at the same paths (a reset containerd root) is a new image.
        try FileSystem.removeTree(snapshots.path + "/2")
        _ = try Self.layers(in: snapshots)
        #expect(try chains.image(lowers: lowers) != image)
    }

    @Test func gcRemovesChainsWhoseLayersAreGone() throws {
        let root = try TemporaryDirectory(), snapshots = try TemporaryDirectory()
        let chains = LayerChainImages(root: root.path)
        let image = try chains.image(lowers: try Self.layers(in: snapshots))
        #expect(chains.collectGarbage().isEmpty)
        try FileSystem.removeTree(snapshots.path + "/1")
        try FileSystem.removeTree(snapshots.path + "/2")
        #expect(chains.collectGarbage(dryRun: true).count == 1 && FileSystem.exists(image))
        #expect(chains.collectGarbage().count == 1)
        #expect(!FileSystem.exists(image))
    }

    @Test func lowersOverlayfsCannotTakeAreRefused() throws {
        let chains = LayerChainImages(root: try TemporaryDirectory().path)
        for bad in [["relative/fs"], ["/a:b"], ["/a,upperdir=/x"], ["/a/../b"], []] {
            #expect(throws: StorageError.self) { try chains.image(lowers: bad) }
        }
        #expect { try chains.image(lowers: ["/nonexistent/fs"]) } throws: { "\($0)".contains("does not exist") }
    }
}
