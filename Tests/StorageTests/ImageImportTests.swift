import Foundation
import HostOS
import Testing
@testable import Storage

private let canBuild = Fixtures.isRoot && Fixtures.erofsTools && !Fixtures.busybox.isEmpty

@Suite(.enabled(if: canBuild, "needs root (mknod, chown, mount), erofs-utils and busybox-static"))
struct ImageImportTests {
    @Test func ociLayoutWithWhiteoutsBecomesOneEROFS() throws {
        let root = try TemporaryDirectory()
        let scratch = try TemporaryDirectory()
        let lower = Fixtures.busyboxLayer()
        let upper = Fixtures.whiteoutLayer()
        let gzipped = try Fixtures.gzip(upper, in: scratch)
        let archive = try scratch.write(
            "image.tar",
            Fixtures.ociLayout(layers: [
                .init(bytes: lower, uncompressed: lower),
                .init(bytes: gzipped, mediaType: OCI.MediaType.ociLayerGzip, uncompressed: upper),
            ]))
        let store = ImageStore(root: root.path)
        let image = try store.import(path: archive, reference: "example.com/test/busybox:1")
        #expect(image.layerCount == 2)
        #expect(image.references == ["example.com/test/busybox:1"])
        #expect(image.config.command == ["/bin/sh"])
        #expect(image.config.environment == ["PATH=/bin", "FOO=bar"])
        #expect(image.config.workingDirectory == "/home/user")
        #expect(image.config.user == "1000")
        #expect(try store.lookup(reference: "example.com/test/busybox:1").id == image.id)

        try Fixtures.withMountedEROFS(image.erofsPath) { tree in
            let manager = FileManager.default
            #expect(manager.contents(atPath: tree + "/bin/busybox") == Data(Fixtures.busybox))
            #expect(try manager.destinationOfSymbolicLink(atPath: tree + "/bin/sh") == "busybox")
            let busybox = try status(tree + "/bin/busybox")
            let hardLink = try status(tree + "/bin/ls")
            // fsck.erofs --extract (the fallback without kernel erofs) drops hard links and xattrs.
            if Fixtures.kernelHasEROFS {
                #expect(busybox.st_ino == hardLink.st_ino && busybox.st_nlink == 2)
                #expect(xattr(tree + "/bin/busybox", "user.rund") == "test-value")
            }
            #expect(busybox.st_mode & 0o7777 == 0o755)
            #expect(try status(tree + "/etc/setuid-tool").st_mode & 0o7777 == 0o4755)
            let home = try status(tree + "/home/user")
            #expect(home.st_uid == 1000 && home.st_gid == 1000 && home.st_mode & 0o7777 == 0o700)
            let null = try status(tree + "/dev/null")
            #expect(null.st_mode & S_IFMT == S_IFCHR && null.st_rdev == FileSystem.deviceNumber(major: 1, minor: 3))
            #expect(try status(tree + "/run-fifo").st_mode & S_IFMT == S_IFIFO)
            #expect(manager.fileExists(atPath: tree + "/usr/share/" + String(repeating: "long-name-", count: 12) + "/file"))
            // Whiteouts: the file is gone, the opaque directory keeps only the upper layer's entries.
            #expect(!manager.fileExists(atPath: tree + "/etc/passwd"))
            #expect(manager.fileExists(atPath: tree + "/etc/motd"))
            #expect(try manager.contentsOfDirectory(atPath: tree + "/opt").sorted() == ["new"])
            #expect(!manager.fileExists(atPath: tree + "/etc/.wh.passwd"))
        }
    }

    @Test func bothArchiveFormatsGiveTheSameImageAndTreeMatchesSource() throws {
        let root = try TemporaryDirectory()
        let scratch = try TemporaryDirectory()
        let layer = Fixtures.busyboxLayer()
        let store = ImageStore(root: root.path)
        let docker = try store.import(path: try scratch.write("docker.tar", Fixtures.dockerSave(layers: [layer], tag: "busybox:latest")))
        let oci = try store.import(
            path: try scratch.write("oci.tar", Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)])))
        #expect(docker.id == oci.id)
        #expect(docker.references == ["docker.io/library/busybox:latest"])
        #expect(try store.list().count == 1)

        // The source tree, unpacked by GNU tar, must equal the EROFS tree.
        let source = scratch.path + "/source"
        try FileSystem.makeDirectory(at: nil, source)
        let layerFile = try scratch.write("layer.tar", layer)
        try Subprocess.checked(["tar", "-xpf", layerFile, "-C", source, "--xattrs", "--xattrs-include=*"])
        let expected = try TreeListing.of(source)
        let actual = try Fixtures.withMountedEROFS(oci.erofsPath) { try TreeListing.of($0) }
        #expect(actual == expected)
    }

    @Test func listAndRemove() throws {
        let root = try TemporaryDirectory()
        let scratch = try TemporaryDirectory()
        let layer = Fixtures.busyboxLayer()
        let store = ImageStore(root: root.path)
        let image = try store.import(
            path: try scratch.write("d.tar", Fixtures.dockerSave(layers: [layer], tag: "busybox:1")), reference: "other:2")
        #expect(try store.list().map(\.references) == [["docker.io/library/busybox:1", "docker.io/library/other:2"]])
        #expect(try store.remove(reference: "busybox:1").isEmpty)
        #expect(try store.lookup(reference: image.shortID).references == ["docker.io/library/other:2"])
        #expect(try store.remove(reference: "other:2") == [image.id])
        #expect(try store.list().isEmpty)
        #expect(!FileManager.default.fileExists(atPath: image.erofsPath))
        #expect(throws: StorageError.self) { try store.lookup(reference: "other:2") }
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path + "/images/tmp").isEmpty)
    }

    @Test func staleStagingIsCleanedButLiveStagingKept() throws {
        let root = try TemporaryDirectory()
        let scratch = try TemporaryDirectory()
        let tmp = root.path + "/images/tmp"
        try FileSystem.makeDirectories(tmp + "/stage-crashed/rootfs")
        _ = try FileSystem.open(at: nil, tmp + "/stage-crashed/.in-use", O_RDWR | O_CREAT)
        try FileSystem.makeDirectories(tmp + "/stage-live")
        let live = try FileSystem.open(at: nil, tmp + "/stage-live/.in-use", O_RDWR | O_CREAT)
        #expect(try FileSystem.lock(live))
        try ImageStore(root: root.path).import(
            path: try scratch.write("d.tar", Fixtures.dockerSave(layers: [Fixtures.busyboxLayer()], tag: "a:1")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: tmp) == ["stage-live"])
        live.close()
    }

    @Test func concurrentImportsOfOneImageBuildItOnce() async throws {
        let root = try TemporaryDirectory()
        let scratch = try TemporaryDirectory()
        let layer = Fixtures.busyboxLayer()
        let archive = try scratch.write("d.tar", Fixtures.dockerSave(layers: [layer], tag: "busybox:latest"))
        let store = ImageStore(root: root.path)
        let results = try await withThrowingTaskGroup(of: StoredImage.self) { group in
            for _ in 0..<4 { group.addTask { try store.import(path: archive) } }
            return try await group.reduce(into: [StoredImage]()) { $0.append($1) }
        }
        #expect(Set(results.map(\.id)).count == 1)
        // Built once: every caller got the same record, with the same build time and file.
        #expect(Set(results.map(\.createdAt)).count == 1)
        #expect(try store.list().count == 1)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path + "/images/tmp").isEmpty)
    }
}

func status(_ path: String) throws -> stat {
    guard let st = try FileSystem.status(at: nil, path) else { throw SystemError("lstat", errno: ENOENT, subject: path) }
    return st
}

func xattr(_ path: String, _ name: String) -> String? {
    FileSystem.extendedAttribute(path, name: name).map { String(decoding: $0, as: UTF8.self) }
}

/// A comparable description of a tree: type, mode, owner, link target, content digest, and (when the
/// image is really mounted, not extracted by fsck.erofs) link counts and xattrs.
enum TreeListing {
    static func of(_ root: String, linksAndXattrs: Bool = Fixtures.kernelHasEROFS) throws -> [String] {
        var lines: [String] = []
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        while let path = enumerator.nextObject() as? String {
            let full = root + "/" + path
            let st = try status(full)
            var line = "\(path) \(String(st.st_mode, radix: 8)) \(st.st_uid):\(st.st_gid)"
            if linksAndXattrs && st.st_mode & S_IFMT != S_IFDIR { line += " nlink=\(st.st_nlink)" }
            switch st.st_mode & S_IFMT {
            case S_IFREG: line += " " + SHA256.hash(Array(FileManager.default.contents(atPath: full) ?? Data()))
            case S_IFLNK: line += " -> " + (try FileManager.default.destinationOfSymbolicLink(atPath: full))
            case S_IFCHR, S_IFBLK: line += " dev=\(st.st_rdev)"
            default: break
            }
            if linksAndXattrs, let value = xattr(full, "user.rund") { line += " xattr=\(value)" }
            lines.append(line)
        }
        return lines.sorted()
    }
}
