import Foundation
import HostOS
import Testing
@testable import Storage

private let canMount =
    Fixtures.isRoot && Fixtures.hasTool("mkfs.xfs") && Fixtures.hasTool("mkfs.ext4")
    && FileManager.default.fileExists(atPath: "/dev/loop-control")

@Suite(.enabled(if: canMount, "needs root, /dev/loop-control, xfsprogs and e2fsprogs"), .serialized)
struct WritableLayersTests {
    private static let marker = 100 << 20

    @Test func layersAreIndependentReflinksOfTheTemplate() async throws {
        let root = try TemporaryDirectory()
        let layers = WritableLayers(root: root.path, poolSizeGiB: 4)
        let first = try layers.make()
        // This host's root is ext4: the XFS pool must have been made and mounted.
        #expect(layers.usesPool == !WritableLayers.canReflink(in: root.path))
        #expect(try first.size() == Int64(WritableLayers.defaultSizeMiB) << 20)
        #expect(try read(first, at: 1080, count: 2) == [0x53, 0xef], "ext4 superblock magic")

        // 200 made concurrently, each written at the same offset: every one sees only its own write.
        let made = try await withThrowingTaskGroup(of: FileDescriptor.self) { group in
            for _ in 0..<200 { group.addTask { try layers.make() } }
            return try await group.reduce(into: [FileDescriptor]()) { $0.append($1) }
        }
        #expect(made.count == 200)
        for (index, layer) in made.enumerated() {
            try write(layer, Array("layer-\(index)".utf8), at: Self.marker)
        }
        for (index, layer) in made.enumerated() {
            #expect(try read(layer, at: Self.marker, count: 12).prefix(while: { $0 != 0 }).elementsEqual(Array("layer-\(index)".utf8)))
        }
        let template = try FileDescriptor.open(try layers.templatePath(sizeMiB: WritableLayers.defaultSizeMiB), O_RDONLY)
        #expect(try read(template, at: Self.marker, count: 12) == [UInt8](repeating: 0, count: 12))
        #expect(try read(first, at: Self.marker, count: 12) == [UInt8](repeating: 0, count: 12))
        // Nothing has a name: the instances directory stays empty.
        #expect(try FileManager.default.contentsOfDirectory(atPath: layers.directory + "/instances").isEmpty)
        for layer in made { layer.close() }
        first.close()
        template.close()
        try layers.detachPool()
    }

    @Test func spaceReturnsWhenTheDescriptorCloses() throws {
        let root = try TemporaryDirectory()
        let layers = WritableLayers(root: root.path, poolSizeGiB: 4)
        let layer = try layers.make(sizeMiB: 128)
        let directory = try FileSystem.openDirectory(at: nil, layers.directory)
        let before = try FileSystem.freeBytes(directory)
        let chunk = [UInt8](repeating: 0xab, count: 1 << 20)
        for mebibyte in 0..<64 { try write(layer, chunk, at: 16 << 20 + mebibyte << 20) }
        try layer.fsync()
        #expect(try FileSystem.allocatedBytes(layer) >= 64 << 20)
        let written = try FileSystem.freeBytes(directory)
        #expect(before - written >= 60 << 20)
        layer.close()
        // XFS frees unlinked inodes in the background: wait for it, briefly.
        var after = written
        for _ in 0..<100 where after - written < 60 << 20 {
            sync()
            usleep(50_000)
            after = try FileSystem.freeBytes(directory)
        }
        #expect(after - written >= 60 << 20, "space was not returned after close")
        directory.close()
        try layers.detachPool()
    }

    @Test(.enabled(if: !WritableLayerBackend.probe(stateRoot: "/tmp").reflinkOnRoot, "/tmp can reflink: no pool to reattach"))
    func poolIsReattachedAfterUnmount() throws {
        let root = try TemporaryDirectory()
        let layers = WritableLayers(root: root.path, poolSizeGiB: 4)
        let template = try layers.templatePath(sizeMiB: 64)
        #expect(layers.usesPool)
        let inode = try status(template).st_ino
        try layers.detachPool()
        #expect(!layers.usesPool)
        let probe = WritableLayerBackend.probe(stateRoot: root.path)
        #expect(probe.poolInUse && !probe.reflinkOnRoot)
        // As after a reboot: the next user mounts the same pool, with its template.
        let layer = try WritableLayers(root: root.path, poolSizeGiB: 4).make(sizeMiB: 64)
        #expect(layers.usesPool)
        #expect(try status(template).st_ino == inode)
        #expect(WritableLayerBackend.probe(stateRoot: root.path).summary.contains("XFS pool"))
        layer.close()
        try layers.detachPool()
    }

    @Test func badSizeIsRefused() throws {
        let root = try TemporaryDirectory()
        #expect(throws: StorageError.self) { try WritableLayers(root: root.path).make(sizeMiB: 1) }
        #expect(!FileManager.default.fileExists(atPath: root.path + "/writable.xfs"))
    }

    private func read(_ file: FileDescriptor, at offset: Int, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        _ = try bytes.withUnsafeMutableBytes { try file.pread(into: $0, at: Int64(offset)) }
        return bytes
    }

    private func write(_ file: FileDescriptor, _ bytes: [UInt8], at offset: Int) throws {
        _ = try bytes.withUnsafeBytes { try file.pwrite($0, at: Int64(offset)) }
    }
}
