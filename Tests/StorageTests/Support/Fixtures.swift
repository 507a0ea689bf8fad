import Foundation
import HostOS
@testable import Storage

/// A temporary state root (or scratch directory), removed with everything under it.
final class TemporaryDirectory {
    let path: String

    init(_ label: String = "rund-storage-test") throws {
        var template = Array("/tmp/\(label)-XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw SystemError.last("mkdtemp")
        }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        // A pool or an image mounted under the root would make removal fail; detach first.
        for mount in Fixtures.mounts(under: path).reversed() { try? Mount.unmount(mount, detach: true) }
        try? FileSystem.removeTree(path)
    }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = path + "/" + name
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return file
    }
}

enum Fixtures {
    static var isRoot: Bool { geteuid() == 0 }
    static func hasTool(_ name: String) -> Bool {
        ["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"].contains { FileManager.default.isExecutableFile(atPath: $0 + name) }
    }
    static var erofsTools: Bool { hasTool("mkfs.erofs") }

    static func mounts(under path: String) -> [String] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 4, fields[4].hasPrefix(path + "/") else { return nil }
            return String(fields[4])
        }
    }

    static let busybox: [UInt8] = Array((try? Data(contentsOf: URL(fileURLWithPath: "/bin/busybox"))) ?? Data())

    /// Digests of big fixtures are asked for many times; SHA-256 in a debug build is slow.
    static func digest(_ bytes: [UInt8]) -> String {
        if bytes.count < 65536 { return "sha256:" + SHA256.hash(bytes) }
        if let known = digestCache.withLock({ $0[bytes.count]?.first { $0.bytes == bytes }?.digest }) { return known }
        let digest = "sha256:" + SHA256.hash(bytes)
        digestCache.withLock { $0[bytes.count, default: []].append((bytes, digest)) }
        return digest
    }

    private static let digestCache = Locked<[Int: [(bytes: [UInt8], digest: String)]]>([:])

    static func gzip(_ bytes: [UInt8], in directory: TemporaryDirectory) throws -> [UInt8] {
        let path = try directory.write("gz-input-\(UInt32.random(in: 0...UInt32.max))", bytes)
        try Subprocess.checked(["gzip", "-n", "-f", path])
        defer { try? FileManager.default.removeItem(atPath: path + ".gz") }
        return Array(try Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
    }

    static func busyboxLayer() -> [UInt8] { busyboxLayerBytes }

    /// The busybox layer: a small but complete-looking tree exercising every entry type.
    private static let busyboxLayerBytes: [UInt8] = {
        var tar = TarWriter()
        tar.directory("bin/")
        tar.file("bin/busybox", busybox, mode: 0o755, xattrs: ["user.rund": "test-value"])
        tar.symlink("bin/sh", to: "busybox")
        tar.hardLink("bin/ls", to: "bin/busybox")
        tar.directory("etc/")
        tar.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
        tar.file("etc/setuid-tool", [1, 2, 3], mode: 0o4755)
        tar.directory("home/user/", mode: 0o700, uid: 1000, gid: 1000)
        tar.file("home/user/notes", Array("owned by user\n".utf8), mode: 0o600, uid: 1000, gid: 1000)
        tar.directory("dev/")
        tar.device("dev/null", character: true, major: 1, minor: 3)
        tar.fifo("run-fifo")
        tar.directory("opt/")
        tar.file("opt/old", "lower\n")
        tar.directory("opt/sub/")
        tar.file("opt/sub/deep", "lower\n")
        tar.file("usr/share/" + String(repeating: "long-name-", count: 12) + "/file", "long path\n")
        return tar.finish()
    }()

    /// Layer 2: whiteouts and an opaque directory over the busybox layer.
    static func whiteoutLayer() -> [UInt8] {
        var tar = TarWriter()
        tar.file("etc/.wh.passwd", [])
        tar.file("opt/.wh..wh..opq", [])
        tar.file("opt/new", "upper\n")
        tar.file("etc/motd", "hello\n")
        return tar.finish()
    }

    struct Layer {
        var bytes: [UInt8]
        var mediaType = OCI.MediaType.ociLayer
        /// The uncompressed tar, for diff_ids.
        var uncompressed: [UInt8]
    }

    static func configJSON(diffIDs: [String], os: String = "linux", architecture: String = "amd64") -> [UInt8] {
        let object: [String: Any] = [
            "architecture": architecture, "os": os,
            "config": ["Env": ["PATH=/bin", "FOO=bar"], "Cmd": ["/bin/sh"], "WorkingDir": "/home/user", "User": "1000"],
            "rootfs": ["type": "layers", "diff_ids": diffIDs],
        ]
        return Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    /// An OCI image layout as a tar. `tamper` may change the blobs before they are written.
    static func ociLayout(
        layers: [Layer], config: [UInt8]? = nil, platform: (os: String, arch: String)? = nil,
        manifestBlobs: ((inout [String: [UInt8]]) -> Void)? = nil
    ) -> [UInt8] {
        let config = config ?? configJSON(diffIDs: layers.map { digest($0.uncompressed) })
        let manifestBytes = manifestJSON(config: config, layers: layers)
        var descriptor: [String: Any] = [
            "mediaType": OCI.MediaType.ociManifest, "digest": digest(manifestBytes), "size": manifestBytes.count,
            "annotations": ["org.opencontainers.image.ref.name": "latest"],
        ]
        if let platform { descriptor["platform"] = ["os": platform.os, "architecture": platform.arch] }
        var blobs: [String: [UInt8]] = [digest(config): config, digest(manifestBytes): manifestBytes]
        for layer in layers { blobs[digest(layer.bytes)] = layer.bytes }
        manifestBlobs?(&blobs)
        return layoutTar(index: json(["schemaVersion": 2, "manifests": [descriptor]]), blobs: blobs)
    }

    /// An OCI layout whose index.json points at an image index with a linux/amd64 and a
    /// linux/arm64 manifest (for `skopeo copy --all`). Returns the tar and the amd64 manifest digest.
    static func multiPlatformLayout(layers: [Layer]) -> (tar: [UInt8], amd64Manifest: String, amd64Config: String) {
        var blobs: [String: [UInt8]] = [:]
        var descriptors: [[String: Any]] = []
        var amd64 = ("", "")
        for architecture in ["arm64", "amd64"] {
            let config = configJSON(diffIDs: layers.map { digest($0.uncompressed) }, architecture: architecture)
            let manifest = manifestJSON(config: config, layers: layers)
            blobs[digest(config)] = config
            blobs[digest(manifest)] = manifest
            for layer in layers { blobs[digest(layer.bytes)] = layer.bytes }
            descriptors.append([
                "mediaType": OCI.MediaType.ociManifest, "digest": digest(manifest), "size": manifest.count,
                "platform": ["os": "linux", "architecture": architecture],
            ])
            if architecture == "amd64" { amd64 = (digest(manifest), digest(config)) }
        }
        let imageIndex = json(["schemaVersion": 2, "mediaType": OCI.MediaType.ociIndex, "manifests": descriptors])
        blobs[digest(imageIndex)] = imageIndex
        let top = json([
            "schemaVersion": 2,
            "manifests": [
                [
                    "mediaType": OCI.MediaType.ociIndex, "digest": digest(imageIndex),
                    "size": imageIndex.count,
                ]
            ],
        ])
        return (layoutTar(index: top, blobs: blobs), amd64.0, amd64.1)
    }

    static func json(_ object: Any) -> [UInt8] {
        Array(try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    static func manifestJSON(config: [UInt8], layers: [Layer]) -> [UInt8] {
        json([
            "schemaVersion": 2, "mediaType": OCI.MediaType.ociManifest,
            "config": ["mediaType": OCI.MediaType.ociConfig, "digest": digest(config), "size": config.count],
            "layers": layers.map { ["mediaType": $0.mediaType, "digest": digest($0.bytes), "size": $0.bytes.count] },
        ])
    }

    static func layoutTar(index: [UInt8], blobs: [String: [UInt8]]) -> [UInt8] {
        var tar = TarWriter()
        tar.file("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}")
        tar.file("index.json", index)
        tar.directory("blobs/")
        tar.directory("blobs/sha256/")
        for (name, bytes) in blobs.sorted(by: { $0.key < $1.key }) {
            tar.file("blobs/sha256/" + String(name.dropFirst(7)), bytes)
        }
        return tar.finish()
    }

    /// A `docker save` archive (the pre-25 layout: <id>/layer.tar, <config>.json, manifest.json).
    static func dockerSave(layers: [[UInt8]], tag: String) -> [UInt8] {
        let config = configJSON(diffIDs: layers.map { digest($0) })
        let configName = String(digest(config).dropFirst(7)) + ".json"
        var tar = TarWriter()
        var layerPaths: [String] = []
        for layer in layers {
            let id = String(digest(layer).dropFirst(7))
            tar.directory(id + "/")
            tar.file(id + "/layer.tar", layer)
            layerPaths.append(id + "/layer.tar")
        }
        tar.file(configName, config)
        let manifest: [[String: Any]] = [["Config": configName, "RepoTags": [tag], "Layers": layerPaths]]
        tar.file("manifest.json", Array(try! JSONSerialization.data(withJSONObject: manifest)))
        return tar.finish()
    }

    /// Everything in the store except lock files: what "unchanged" is checked against.
    static func snapshot(_ root: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        var result: [String] = []
        while let path = enumerator.nextObject() as? String {
            if path.contains("locks/") { continue }
            let attributes = try? FileManager.default.attributesOfItem(atPath: root + "/" + path)
            result.append("\(path) \((attributes?[.size] as? Int) ?? -1)")
        }
        return result.sorted()
    }

    /// Mounts an EROFS file read-only through a loop device and runs body on the mount point.
    static func withMountedEROFS<T>(_ image: String, _ body: (String) throws -> T) throws -> T {
        let scratch = try TemporaryDirectory("rund-erofs-mount")
        let mountPoint = scratch.path + "/mnt"
        try FileSystem.makeDirectory(at: nil, mountPoint)
        if kernelHasEROFS {
            let loop = try LoopDevice.attach(file: image, readOnly: true)
            try Mount.mount(source: loop.path, target: mountPoint, type: "erofs", flags: UInt(MS_RDONLY))
            loop.device.close()
            defer { try? Mount.unmount(mountPoint) }
            return try body(mountPoint)
        }
        try Subprocess.checked(["fsck.erofs", "--extract=" + mountPoint + "/x", image])
        return try body(mountPoint + "/x")
    }

    static var kernelHasEROFS: Bool {
        ((try? String(contentsOfFile: "/proc/filesystems", encoding: .utf8)) ?? "").contains("erofs")
    }
}

/// A value behind a lock, for fixture caches shared by parallel tests.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}
