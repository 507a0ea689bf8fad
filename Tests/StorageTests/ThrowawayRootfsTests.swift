import Foundation
import HostOS
import Testing
@testable import Storage

/// `rund run --rootfs DIR`: the directory becomes an EROFS that only the returned descriptor
/// keeps alive; nothing stays in the store.
@Suite(.enabled(if: Fixtures.erofsTools, "needs mkfs.erofs (apt-get install erofs-utils)"))
struct ThrowawayRootfsTests {
    @Test func theEROFSLivesOnlyInTheDescriptor() throws {
        let root = try TemporaryDirectory()
        let tree = try TemporaryDirectory()
        try FileSystem.makeDirectory(at: nil, tree.path + "/bin")
        _ = try tree.write("bin/hello", Array("hello\n".utf8))
        let store = ImageStore(root: root.path)
        let erofs = try store.buildThrowawayRootfs(of: tree.path)
        defer { erofs.close() }
        // The EROFS superblock magic sits at offset 1024.
        var magic: UInt32 = 0
        _ = try withUnsafeMutableBytes(of: &magic) { try erofs.pread(into: $0, at: 1024) }
        #expect(magic == 0xE0F5_E1E2)
        #expect(try FileSystem.status(of: erofs).st_nlink == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path + "/images/tmp") == [])
        if Fixtures.isRoot {
            try Fixtures.withMountedEROFS("/proc/self/fd/\(erofs.rawValue)") { mounted in
                #expect(FileManager.default.contents(atPath: mounted + "/bin/hello") == Data("hello\n".utf8))
            }
        }
    }

    @Test func aMissingDirectoryIsOneLine() throws {
        let root = try TemporaryDirectory()
        #expect {
            _ = try ImageStore(root: root.path).buildThrowawayRootfs(of: root.path + "/absent")
        } throws: { error in
            "\(error)".hasPrefix("cannot use \(root.path)/absent as the container's root") && !"\(error)".contains("\n")
        }
        let staging = root.path + "/images/tmp"
        #expect((try? FileManager.default.contentsOfDirectory(atPath: staging)) ?? [] == [])
    }
}
