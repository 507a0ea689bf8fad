import Foundation
import HostOS
import Testing
@testable import Storage

private let canBuild = Fixtures.isRoot && Fixtures.erofsTools && !Fixtures.busybox.isEmpty

private func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A numeric tar header field and its place.
private struct Field: Sendable, CustomStringConvertible {
    let name: String
    let offset: Int
    let length: Int
    var description: String { name }

    static let size = Field(name: "size", offset: 124, length: 12)
    static let mode = Field(name: "mode", offset: 100, length: 8)
    static let uid = Field(name: "uid", offset: 108, length: 8)
    static let gid = Field(name: "gid", offset: 116, length: 8)
    static let mtime = Field(name: "mtime", offset: 136, length: 12)
    static let checksum = Field(name: "checksum", offset: 148, length: 8)
    static let devmajor = Field(name: "devmajor", offset: 329, length: 8)
    static let devminor = Field(name: "devminor", offset: 337, length: 8)
    static let all = [size, mode, uid, gid, mtime, checksum, devmajor, devminor]

    /// Encodings no header may carry for this field: each must be refused, none may trap.
    var hostileEncodings: [(String, [UInt8])] {
        var cases: [(String, [UInt8])] = [
            ("octal with garbage", pad(utf8("12x4") + [0])),
            ("octal with an inner space", pad(utf8("1 2") + [0])),
            ("base-256 past Int64", [0x80] + [UInt8](repeating: 0xff, count: length - 1)),
            ("base-256 with the sign bit in the wrong byte", [0xbf] + [UInt8](repeating: 0xff, count: length - 1)),
        ]
        if name != "mtime" {  // Times before 1970 are real; every other field must be >= 0.
            cases.append(("negative base-256", [0xff] + [UInt8](repeating: 0xff, count: length - 2) + [0xfe]))
        }
        if length == 12 && name != "mtime" {
            cases.append(("base-256 near Int64.max", [0x80, 0, 0, 0] + [0x7f] + [UInt8](repeating: 0xff, count: 7)))
        } else if length == 8 {
            cases.append(("base-256 past UInt32", [0x80, 0, 0x01] + [UInt8](repeating: 0, count: 5)))
        }
        return cases
    }

    private func pad(_ bytes: [UInt8]) -> [UInt8] { bytes + [UInt8](repeating: 0, count: max(0, length - bytes.count)) }
}

/// One entry whose header field carries `bytes` (a device node, so devmajor/devminor count).
private func archive(_ field: Field, _ bytes: [UInt8]) -> [UInt8] {
    var tar = TarWriter()
    tar.raw(utf8("node"), field.name.hasPrefix("dev") ? .character : .file, content: field.name.hasPrefix("dev") ? [] : utf8("x")) {
        header in
        for (i, byte) in bytes.enumerated() { header[field.offset + i] = byte }
    }
    return tar.finish()
}

/// Parses an archive in memory to the end, reading every entry's content.
private func parse(_ bytes: [UInt8], limits: StorageLimits = StorageLimits()) -> StorageError? {
    var reader = TarReader(MemorySource(bytes), describing: "test archive", limits: limits)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 8)
    defer { buffer.deallocate() }
    do {
        while try reader.next() != nil {
            while try reader.readContent(into: buffer) > 0 {}
        }
        return nil
    } catch let error as StorageError {
        return error
    } catch {
        return StorageError(.io, "not a StorageError: \(error)")
    }
}

/// Tar headers with hostile numbers and extension headers: refused with one line, never a trap.
@Suite struct TarParsingTests {
    @Test(arguments: Field.all) fileprivate func hostileNumericFieldsAreRefused(_ field: Field) {
        for (label, bytes) in field.hostileEncodings {
            let error = parse(archive(field, bytes))
            #expect(error != nil && error?.kind != .io, "\(field) \(label): \(String(describing: error))")
            #expect(error.map { !$0.description.contains("\n") } ?? true)
        }
    }

    /// The inputs the TarReader fuzz target found trapping (kept in its corpus): each is now read or
    /// refused with a StorageError.
    @Test func fuzzerFindingsNeverTrap() throws {
        let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz/Corpus/TarReader")
            .standardized
        let findings = try FileManager.default.contentsOfDirectory(atPath: corpus.path).filter { $0.hasPrefix("finding-") }.sorted()
        #expect(findings.count == 3)
        for name in findings {
            let bytes = try [UInt8](Data(contentsOf: corpus.appendingPathComponent(name)))
            let error = parse(bytes)
            #expect(error?.kind != .io, "\(name): \(String(describing: error))")
        }
    }

    @Test func numbersTarsReallyWriteAreRead() throws {
        // Spaces and NULs around octal digits; base-256 sizes and uids; a time before 1970.
        var tar = TarWriter()
        tar.raw(utf8("padded"), content: utf8("abc")) { header in
            for (i, byte) in (utf8(" 644") + [0x20, 0, 0, 0]).enumerated() { header[100 + i] = byte }
        }
        tar.raw(utf8("big-uid"), content: []) { header in
            for (i, byte) in ([0x80, 0, 0, 0, 0x7f, 0xff, 0xff, 0xfe] as [UInt8]).enumerated() { header[108 + i] = byte }
        }
        tar.raw(utf8("old"), content: []) { header in
            for (i, byte) in ([0xff] + [UInt8](repeating: 0xff, count: 10) + [0x00] as [UInt8]).enumerated() { header[136 + i] = byte }
        }
        var reader = TarReader(MemorySource(tar.finish()), describing: "test")
        let padded = try #require(try reader.next())
        #expect(padded.mode == 0o644 && padded.size == 3)
        #expect(try reader.next()?.uid == 0x7fff_fffe)
        #expect(try reader.next()?.modificationTime == -256)
        #expect(try reader.next() == nil)
    }

    @Test func sizesNearInt64MaxNeverOverflow() throws {
        // With every limit lifted, a size of Int64.max still ends in an error, not a trap.
        var limits = StorageLimits()
        limits.layerBytes = .max
        let huge = [0x80, 0, 0, 0, 0x7f] + [UInt8](repeating: 0xff, count: 7)
        #expect(parse(archive(.size, huge), limits: limits) != nil)
        // Skipping the unread content of such an entry (size + padding) is where it would overflow.
        var reader = TarReader(MemorySource(archive(.size, huge)), describing: "test", limits: limits)
        #expect(try reader.next()?.size == .max)
        #expect(throws: StorageError.self) { try reader.next() }
        var paxSize = TarWriter()
        paxSize.raw(utf8("x"), content: [], pax: [(utf8("size"), utf8("9223372036854775807"))])
        #expect(parse(paxSize.finish(), limits: limits) != nil)
        var paxOverflow = TarWriter()
        paxOverflow.raw(utf8("x"), content: [], pax: [(utf8("size"), utf8("99999999999999999999999"))])
        #expect(parse(paxOverflow.finish())?.kind == .badInput)
    }

    @Test func hostilePaxRecords() {
        let records: [(String, [UInt8])] = [
            ("length past Int.max", utf8("99999999999999999999999 path=x\n")),
            ("length longer than the header", utf8("99 path=x\n")),
            ("length shorter than its own digits", utf8("1 path=x\n")),
            ("no length", utf8(" path=x\n")),
            ("negative length", utf8("-5 path=x\n")),
            ("no equals", utf8("9 pathx\n\n")),
            ("uid past UInt32", TarWriter.paxRecords([(utf8("uid"), utf8("4294967296"))])),
            ("mtime not a number", TarWriter.paxRecords([(utf8("mtime"), utf8("12e9"))])),
            ("xattr name with NUL", TarWriter.paxRecords([(utf8("SCHILY.xattr.a") + [0] + utf8("b"), utf8("v"))])),
        ]
        for (label, body) in records {
            var tar = TarWriter()
            tar.extensionHeader(type: UInt8(ascii: "x"), body)
            tar.raw(utf8("x"), content: [])
            let error = parse(tar.finish())
            #expect(error?.kind == .badInput, "\(label): \(String(describing: error))")
        }
    }

    @Test func extensionHeadersAreBounded() {
        var endless = TarWriter()
        for _ in 0..<100 { endless.extensionHeader(type: UInt8(ascii: "x"), TarWriter.paxRecords([(utf8("comment"), utf8("again"))])) }
        endless.raw(utf8("x"), content: [])
        #expect(parse(endless.finish())?.kind == .limitExceeded)
        var longNames = TarWriter()
        for _ in 0..<100 { longNames.extensionHeader(type: UInt8(ascii: "L"), utf8("name") + [0]) }
        longNames.raw(utf8("x"), content: [])
        #expect(parse(longNames.finish())?.kind == .limitExceeded)
        // A header claiming 2 MiB: refused before a byte of it is read.
        var oversized = TarWriter()
        oversized.extensionHeader(type: UInt8(ascii: "x"), []) { header in
            for (i, byte) in (utf8(String(2 << 20, radix: 8).leftPad(11)) + [0]).enumerated() { header[124 + i] = byte }
        }
        #expect(parse(oversized.finish())?.kind == .limitExceeded)
        // Global headers that only ever add keys.
        var globals = TarWriter()
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: 200_000)
        for key in 0..<8 {
            globals.extensionHeader(type: UInt8(ascii: "g"), TarWriter.paxRecords([(utf8("k\(key)"), value)]))
            globals.raw(utf8("f\(key)"), content: [])
        }
        #expect(parse(globals.finish())?.kind == .limitExceeded)
    }

    @Test func gzipThatIsNotGzipOrEndsEarly() throws {
        let scratch = try TemporaryDirectory()
        var tar = TarWriter()
        tar.file("f", "content")
        let compressed = try Fixtures.gzip(tar.finish(), in: scratch)
        let cases: [(String, [UInt8])] = [
            ("truncated", Array(compressed.prefix(compressed.count / 2))),
            ("corrupt deflate data", Array(compressed.prefix(10)) + [UInt8](repeating: 0xff, count: 64)),
            ("header only", Array(compressed.prefix(10))),
            ("empty", []),
        ]
        for (label, bytes) in cases {
            #expect(throws: StorageError.self, "\(label)") {
                var reader = TarReader(try GzipSource(MemorySource(bytes)), describing: "gzip test")
                while try reader.next() != nil {}
            }
        }
    }
}

/// The same hostile headers and limits through a real import: one line, store and canary
/// unchanged, no staging left.
@Suite(.enabled(if: canBuild, "needs root (mknod, chown), erofs-utils and busybox-static"))
struct HostileTarImportTests {
    @Test func hostileNumericFieldsFailTheImport() throws {
        let bench = try HostileBench()
        for field in Field.all {
            for (label, bytes) in field.hostileEncodings {
                let error = try bench.refuse(bench.layout([archive(field, bytes)]), "\(field) \(label)")
                #expect(error?.kind == .badInput || error?.kind == .limitExceeded, "\(field) \(label): \(String(describing: error))")
            }
        }
        // The outer archive's own headers go through the same reader.
        var outer = bench.layout([Fixtures.busyboxLayer()])
        var header = Array(outer[0..<512])
        for i in 124..<136 { header[i] = 0xff }
        for i in 148..<156 { header[i] = 0 }
        TarWriter.seal(&header)
        outer.replaceSubrange(0..<512, with: header)
        try bench.refuse(outer, "outer archive with a negative size")
    }

    @Test func endlessAndOversizedPaxHeaders() throws {
        let bench = try HostileBench()
        var endless = TarWriter()
        for _ in 0..<1000 { endless.extensionHeader(type: UInt8(ascii: "x"), TarWriter.paxRecords([(utf8("path"), utf8("again"))])) }
        endless.raw(utf8("x"), content: [])
        #expect(try bench.refuse(bench.layout([endless.finish()]), "endless pax")?.kind == .limitExceeded)
        var oversized = TarWriter()
        oversized.extensionHeader(
            type: UInt8(ascii: "x"), TarWriter.paxRecords([(utf8("comment"), [UInt8](repeating: 0x61, count: (1 << 20) + 1))]))
        oversized.raw(utf8("x"), content: [])
        #expect(try bench.refuse(bench.layout([oversized.finish()]), "oversized pax")?.kind == .limitExceeded)
    }

    @Test func decompressionBombsStopAtTheLimit() throws {
        let bench = try HostileBench()
        var limits = StorageLimits()
        limits.layerBytes = 1 << 20
        limits.imageBytes = 3 << 19
        let small = ImageStore(root: bench.root.path, limits: limits)
        // A gzip layer inflating to 8 MiB of zeros (about 8 KiB compressed), in files each under
        // the layer limit: the stream itself is cut off, not one oversized entry.
        var bombTar = TarWriter()
        for file in 0..<16 { bombTar.file("zeros-\(file)", [UInt8](repeating: 0, count: 512 << 10)) }
        let bomb = bombTar.finish()
        let compressed = try Fixtures.gzip(bomb, in: bench.scratch)
        #expect(compressed.count < 64 << 10)
        let layer = Fixtures.Layer(bytes: compressed, mediaType: OCI.MediaType.ociLayerGzip, uncompressed: bomb)
        let error = try bench.refuse(Fixtures.ociLayout(layers: [layer]), with: small, "gzip bomb")
        #expect(error?.kind == .limitExceeded && error?.message.contains("inflates to more than") == true, "\(String(describing: error))")
        // Zeros after the end-of-archive marker count too (they are hashed for the diff_id).
        var tiny = TarWriter()
        tiny.file("f", "x")
        let trailing = tiny.finish() + [UInt8](repeating: 0, count: 8 << 20)
        let trailingLayer = Fixtures.Layer(
            bytes: try Fixtures.gzip(trailing, in: bench.scratch), mediaType: OCI.MediaType.ociLayerGzip, uncompressed: trailing)
        #expect(
            try bench.refuse(Fixtures.ociLayout(layers: [trailingLayer]), with: small, "bomb after the end marker")?.kind == .limitExceeded)
        // Two layers each under the layer limit, together over the image limit.
        var half = TarWriter()
        half.file("half", [UInt8](repeating: 1, count: 900 << 10))
        let halfLayer = half.finish()
        let imageError = try bench.refuse(bench.layout([halfLayer, halfLayer]), with: small, "image limit")
        #expect(imageError?.kind == .limitExceeded && imageError?.message.contains("past") == true, "\(String(describing: imageError))")
        // A gzip-compressed import archive that unpacks past its limit.
        var archiveLimits = StorageLimits()
        archiveLimits.archiveBytes = 1 << 20
        let smallArchive = ImageStore(root: bench.root.path, limits: archiveLimits)
        let archive = try Fixtures.gzip(bench.layout([bomb]), in: bench.scratch)
        #expect(try bench.refuse(archive, with: smallArchive, "archive bomb")?.kind == .limitExceeded)
    }

    @Test func oversizedAndHostileDocuments() throws {
        let bench = try HostileBench()
        let layer = Fixtures.busyboxLayer()
        // index.json one byte over the 4 MiB default (JSON padded with spaces).
        var index = TarWriter()
        index.file("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}")
        index.file("index.json", utf8("{\"schemaVersion\":2,\"manifests\":[]}") + [UInt8](repeating: 0x20, count: 4 << 20))
        let indexError = try bench.refuse(index.finish(), "oversized index.json")
        #expect(indexError?.kind == .limitExceeded, "\(String(describing: indexError))")
        // An oversized config blob and manifest blob, with correct digests.
        var limits = StorageLimits()
        limits.documentBytes = 64 << 10
        let small = ImageStore(root: bench.root.path, limits: limits)
        let bigConfig =
            Fixtures.configJSON(diffIDs: [Fixtures.digest(layer)]).dropLast() + [UInt8](repeating: 0x20, count: 100 << 10) + utf8("}")
        #expect(
            try bench.refuse(
                Fixtures.ociLayout(layers: [.init(bytes: layer, uncompressed: layer)], config: Array(bigConfig)),
                with: small, "oversized config")?.kind == .limitExceeded)
        var manifestJSON = TarWriter()
        manifestJSON.file("manifest.json", utf8("[") + [UInt8](repeating: 0x20, count: 100 << 10) + utf8("]"))
        #expect(try bench.refuse(manifestJSON.finish(), with: small, "oversized docker-save manifest.json")?.kind == .limitExceeded)
        // Deep nesting, wrong types, huge numbers: decoding errors, not crashes.
        for (label, json) in [
            ("deeply nested", utf8(String(repeating: "[", count: 100_000))),
            ("wrong types", utf8("{\"manifests\":\"x\"}")),
            ("huge size", utf8("{\"manifests\":[{\"digest\":\"sha256:" + String(repeating: "a", count: 64) + "\",\"size\":1e400}]}")),
            ("not UTF-8", [0x7b, 0xff, 0xfe, 0x7d]),
        ] {
            var tar = TarWriter()
            tar.file("oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}")
            tar.file("index.json", json)
            #expect(try bench.refuse(tar.finish(), label)?.kind == .badInput, "\(label)")
        }
        // More layers than allowed (the same blob listed 2000 times).
        let descriptor: [String: Any] = ["mediaType": OCI.MediaType.ociLayer, "digest": Fixtures.digest(layer), "size": layer.count]
        let config = Fixtures.configJSON(diffIDs: Array(repeating: Fixtures.digest(layer), count: 2000))
        let manifest = Fixtures.json([
            "schemaVersion": 2, "mediaType": OCI.MediaType.ociManifest,
            "config": ["mediaType": OCI.MediaType.ociConfig, "digest": Fixtures.digest(config), "size": config.count],
            "layers": Array(repeating: descriptor, count: 2000),
        ])
        let top = Fixtures.json([
            "schemaVersion": 2,
            "manifests": [["mediaType": OCI.MediaType.ociManifest, "digest": Fixtures.digest(manifest), "size": manifest.count]],
        ])
        let manyLayers = Fixtures.layoutTar(
            index: top, blobs: [Fixtures.digest(config): config, Fixtures.digest(manifest): manifest, Fixtures.digest(layer): layer])
        #expect(try bench.refuse(manyLayers, "2000 layers")?.kind == .limitExceeded)
    }
}
