/// A streaming tar reader for ustar, pax (per-file and global) and GNU long names.
/// It only parses; deciding what is safe to write is `LayerApplier`'s job.
struct TarReader<Source: ByteSource> {
    var source: Source
    private let what: String
    /// Bytes of the current entry's content not yet consumed, and its padding.
    private var remaining: Int64 = 0
    private var padding: Int64 = 0
    private var globalPax: [String: [UInt8]] = [:]

    /// Extended headers larger than this are refused: they would only be a memory attack.
    private static var metadataLimit: Int64 { 1 << 20 }

    init(_ source: Source, describing what: String) {
        self.source = source
        self.what = what
    }

    /// The next entry, or nil at the end-of-archive marker. Unread content of the previous
    /// entry is skipped.
    mutating func next() throws -> TarEntry? {
        try skipRest()
        var pax = globalPax
        var longName: String?
        var longLink: String?
        var header = [UInt8](repeating: 0, count: 512)
        while true {
            try header.withUnsafeMutableBytes { try source.readExactly(into: $0, what: what) }
            if header.allSatisfy({ $0 == 0 }) {
                // End of archive. The second zero block is optional in practice.
                return nil
            }
            try verifyChecksum(header)
            let type = header[156]
            let size = try number(header, 124, 12)
            guard size >= 0 else { throw corrupt("negative size") }
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                let records = try parsePax(try readMetadata(size))
                if type == UInt8(ascii: "g") {
                    globalPax.merge(records) { $1 }
                }
                pax.merge(records) { $1 }
                continue
            case UInt8(ascii: "L"):
                longName = cString(try readMetadata(size))
                continue
            case UInt8(ascii: "K"):
                longLink = cString(try readMetadata(size))
                continue
            default:
                break
            }
            var entry = TarEntry(
                path: "", kind: .regular, size: size,
                mode: UInt32(truncatingIfNeeded: try number(header, 100, 8)),
                uid: UInt32(truncatingIfNeeded: try number(header, 108, 8)),
                gid: UInt32(truncatingIfNeeded: try number(header, 116, 8)),
                modificationTime: Int(try number(header, 136, 12)),
                linkTarget: longLink ?? cString(header[157..<257]),
                deviceMajor: UInt32(truncatingIfNeeded: try number(header, 329, 8)),
                deviceMinor: UInt32(truncatingIfNeeded: try number(header, 337, 8)),
                extendedAttributes: [])
            let isUstar = header[257..<263].elementsEqual(Array("ustar\0".utf8))
            let prefix = isUstar ? cString(header[345..<500]) : ""
            let name = cString(header[0..<100])
            entry.path = longName ?? (prefix.isEmpty ? name : prefix + "/" + name)
            try apply(pax, to: &entry)
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): entry.kind = .regular
            case UInt8(ascii: "1"): entry.kind = .hardLink
            case UInt8(ascii: "2"): entry.kind = .symbolicLink
            case UInt8(ascii: "3"): entry.kind = .characterDevice
            case UInt8(ascii: "4"): entry.kind = .blockDevice
            case UInt8(ascii: "5"): entry.kind = .directory
            case UInt8(ascii: "6"): entry.kind = .fifo
            default:
                throw StorageError(.unsupported, "\(what): entry '\(entry.path)' has unsupported tar type '\(Character(Unicode.Scalar(type)))'; re-export the image with a standard tar")
            }
            // Old tars mark directories only with a trailing slash.
            if entry.kind == .regular && entry.path.hasSuffix("/") { entry.kind = .directory }
            // Like Go's archive/tar: only regular files carry data blocks.
            if entry.kind != .regular { entry.size = 0 }
            remaining = entry.size
            padding = (512 - entry.size % 512) % 512
            return entry
        }
    }

    /// Reads up to buffer.count bytes of the current entry's content; 0 at its end.
    mutating func readContent(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard remaining > 0 else { return 0 }
        let want = Int(min(Int64(buffer.count), remaining))
        let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want])
        try source.readExactly(into: chunk, what: what)
        remaining -= Int64(want)
        return want
    }

    private mutating func skipRest() throws {
        try source.skip(remaining + padding, what: what)
        remaining = 0
        padding = 0
    }

    private mutating func readMetadata(_ size: Int64) throws -> [UInt8] {
        guard size <= Self.metadataLimit else { throw corrupt("extended header of \(size) bytes") }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        try bytes.withUnsafeMutableBytes { try source.readExactly(into: $0, what: what) }
        try source.skip((512 - size % 512) % 512, what: what)
        return bytes
    }

    private func apply(_ pax: [String: [UInt8]], to entry: inout TarEntry) throws {
        for (key, value) in pax {
            let text = String(decoding: value, as: UTF8.self)
            switch key {
            case "path": entry.path = text
            case "linkpath": entry.linkTarget = text
            case "size": entry.size = try decimal(text, key)
            case "uid": entry.uid = UInt32(truncatingIfNeeded: try decimal(text, key))
            case "gid": entry.gid = UInt32(truncatingIfNeeded: try decimal(text, key))
            case "mtime": entry.modificationTime = Int(try decimal(String(text.prefix { $0 != "." }), key))
            default:
                if key.hasPrefix("SCHILY.xattr.") {
                    entry.extendedAttributes.append((String(key.dropFirst("SCHILY.xattr.".count)), value))
                } else if key.hasPrefix("GNU.sparse.") {
                    throw StorageError(.unsupported, "\(what): sparse tar entries are not supported; re-export the image without --sparse")
                }
            }
        }
        entry.extendedAttributes.sort { $0.name < $1.name }
    }

    /// pax records: "LEN key=value\n", LEN counting the whole record.
    private func parsePax(_ bytes: [UInt8]) throws -> [String: [UInt8]] {
        var records: [String: [UInt8]] = [:]
        var index = 0
        while index < bytes.count {
            if bytes[index] == 0 { break }
            guard let space = bytes[index...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: bytes[index..<space], as: UTF8.self)),
                  length > space - index + 1, index + length <= bytes.count,
                  bytes[index + length - 1] == UInt8(ascii: "\n") else {
                throw corrupt("malformed pax record")
            }
            let record = bytes[(space + 1)..<(index + length - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else { throw corrupt("malformed pax record") }
            records[String(decoding: record[record.startIndex..<equals], as: UTF8.self)] = Array(record[(equals + 1)...])
            index += length
        }
        return records
    }

    private func verifyChecksum(_ header: [UInt8]) throws {
        let stored = try number(header, 148, 8)
        var unsigned = 0
        var signed = 0
        for (i, byte) in header.enumerated() {
            let value = (148..<156).contains(i) ? 0x20 : byte
            unsigned += Int(value)
            signed += Int(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else {
            throw StorageError(.badInput, "\(what) is not a valid tar archive (header checksum mismatch); the file is corrupt or not a tar")
        }
    }

    /// Octal ASCII, or base-256 when the top bit of the first byte is set (GNU/star).
    private func number(_ header: [UInt8], _ offset: Int, _ length: Int) throws -> Int64 {
        let field = header[offset..<(offset + length)]
        if let first = field.first, first & 0x80 != 0 {
            guard first == 0x80, field.dropFirst().prefix(length - 9).allSatisfy({ $0 == 0 }) else { throw corrupt("numeric field out of range") }
            return field.suffix(8).reduce(Int64(0)) { $0 << 8 | Int64($1) } & Int64.max
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value < (Int64.max >> 3) else { throw corrupt("numeric field out of range") }
                value = value << 3 | Int64(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " "), 0:
                if seenDigit { return value }
            default:
                throw corrupt("non-octal numeric field")
            }
        }
        return value
    }

    private func decimal(_ text: String, _ key: String) throws -> Int64 {
        guard let value = Int64(text), value >= 0 else { throw corrupt("pax \(key) '\(text)' is not a number") }
        return value
    }

    private func cString<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
    }

    private func corrupt(_ detail: String) -> StorageError {
        StorageError(.badInput, "\(what) is a corrupt tar archive (\(detail)); export or fetch it again")
    }
}
