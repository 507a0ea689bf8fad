import Foundation
import HostOS
import Testing
@testable import Storage

/// A store holding one good image, a canary directory outside the store that escaping names aim
/// at, and the checks every refused import must pass: one-line StorageError, store unchanged,
/// canary unchanged, no staging left behind.
final class HostileBench {
    let root: TemporaryDirectory
    let scratch: TemporaryDirectory
    /// Outside the store: holds `keep` (a file) and `sub/inner` (a directory with a file).
    let canary: TemporaryDirectory
    let store: ImageStore

    init() throws {
        root = try TemporaryDirectory()
        scratch = try TemporaryDirectory()
        canary = try TemporaryDirectory("rund-canary")
        store = ImageStore(root: root.path)
        _ = try canary.write("keep", Array("canary\n".utf8))
        try FileSystem.makeDirectory(at: nil, canary.path + "/sub")
        _ = try canary.write("sub/inner", Array("inner\n".utf8))
        try store.import(path: try scratch.write("good.tar", Fixtures.dockerSave(layers: [Fixtures.busyboxLayer()], tag: "good:1")))
    }

    /// The canary's path as bytes, without the leading slash (to append to a chain of `..`).
    var canaryRelativeToHostRoot: [UInt8] { Array(canary.path.utf8.dropFirst()) }
    var canaryBytes: [UInt8] { Array(canary.path.utf8) }

    /// An OCI layout of these layer tars.
    func layout(_ layers: [[UInt8]]) -> [UInt8] {
        Fixtures.ociLayout(layers: layers.map { .init(bytes: $0, uncompressed: $0) })
    }

    /// Imports `archive` with `store` (default: the bench's), expecting a refusal that changed nothing.
    @discardableResult
    func refuse(
        _ archive: [UInt8], with store: ImageStore? = nil, _ label: String = "",
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> StorageError? {
        let store = store ?? self.store
        let before = Fixtures.snapshot(root.path)
        let canaryBefore = Self.listing(canary.path)
        let path = try scratch.write("bad-\(UInt32.random(in: 0...UInt32.max)).tar", archive)
        defer { try? FileManager.default.removeItem(atPath: path) }
        var refusal: StorageError?
        do {
            try store.import(path: path)
            Issue.record("\(label): import of a hostile archive succeeded", sourceLocation: sourceLocation)
        } catch let error as StorageError {
            #expect(!error.description.contains("\n") && !error.description.isEmpty, "\(label): \(error)", sourceLocation: sourceLocation)
            refusal = error
        } catch {
            Issue.record("\(label): not a StorageError: \(error)", sourceLocation: sourceLocation)
        }
        #expect(Fixtures.snapshot(root.path) == before, "\(label): the store changed", sourceLocation: sourceLocation)
        #expect(
            Self.listing(canary.path) == canaryBefore, "\(label): something was written outside the store", sourceLocation: sourceLocation)
        #expect(Self.stagingLeft(root.path).isEmpty, "\(label): staging left behind", sourceLocation: sourceLocation)
        return refusal
    }

    /// Entries under images/tmp (staging directories a failed import must remove).
    static func stagingLeft(_ root: String) -> [[UInt8]] {
        (try? FileSystem.openDirectory(at: nil, root + "/images/tmp")).map { (try? Self.names($0)) ?? [] } ?? []
    }

    /// Every entry under `path`, by raw name bytes, with type, size, link count and mode: a new
    /// name in any encoding, a new hard link or a changed file shows.
    static func listing(_ path: String) -> [String] {
        var result: [String] = []
        func walk(_ directory: FileDescriptor, _ prefix: [UInt8]) {
            for name in (try? names(directory)) ?? [] {
                var st = stat()
                let child = prefix + [UInt8(ascii: "/")] + name
                guard withCName(name, { fstatat(directory.rawValue, $0, &st, AT_SYMLINK_NOFOLLOW) }) == 0 else {
                    result.append("\(child) unreadable")
                    continue
                }
                result.append("\(child) mode=\(st.st_mode) size=\(st.st_size) links=\(st.st_nlink) mtime=\(st.st_mtim.tv_sec)")
                if st.st_mode & S_IFMT == S_IFDIR {
                    let fd = withCName(name) { openat(directory.rawValue, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW) }
                    if fd >= 0 { walk(FileDescriptor(adopting: fd), child) }
                }
            }
        }
        guard let top = try? FileDescriptor.openDirectory(path) else { return ["missing"] }
        walk(top, [])
        return result.sorted()
    }

    /// Directory entries as raw bytes (no String decoding that could hide a name).
    static func names(_ directory: FileDescriptor) throws -> [[UInt8]] {
        let copy = dup(directory.rawValue)
        guard copy >= 0, let stream = fdopendir(copy) else { throw SystemError.last("fdopendir") }
        defer { closedir(stream) }
        var names: [[UInt8]] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2e] && name != [0x2e, 0x2e] { names.append(name) }
        }
        return names
    }
}

/// Calls body with `name` as a NUL-terminated C string, bytes untouched.
func withCName<T>(_ name: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
    (name + [0]).withUnsafeBufferPointer { bytes in
        bytes.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) }
    }
}
