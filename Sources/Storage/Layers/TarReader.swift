/// A streaming tar reader for ustar, pax (per-file and global) and GNU long names.
/// It only parses; deciding what is safe to write is `LayerApplier`'s job.
///
/// Everything in a header is untrusted: numbers are parsed with overflow checks (octal with
/// spaces/NUL padding, base-256 positive and negative), sizes are bounded by `StorageLimits`
/// before any arithmetic, and extension headers are bounded in size and in number, so no input
/// can trap, allocate without bound or loop forever.
struct TarReader<Source: ByteSource> {
    var source: Source
    private let what: String
    private let limits: StorageLimits
    /// Bytes of the current entry's content not yet consumed, and its padding.
    private var remaining: Int64 = 0
    private var padding: Int64 = 0
    private var globalPax: [[UInt8]: [UInt8]] = [:]

    init(_ source: Source, describing what: String, limits: StorageLimits = StorageLimits()) {
        self.source = source
        self.what = what
        self.limits = limits
    }

    /// The next entry, or nil at the end-of-archive marker. Unread content of the previous
    /// entry is skipped.
    mutating func next() throws -> TarEntry? {
        try skipRest()
        var pax = globalPax
        var longName: [UInt8]?
        var longLink: [UInt8]?
        var extensionHeaders = 0
        var header = [UInt8](repeating: 0, count: 512)
        while true {
            try header.withUnsafeMutableBytes { try source.readExactly(into: $0, what: what) }
            if header.allSatisfy({ $0 == 0 }) {
                // End of archive. The second zero block is optional in practice.
                return nil
            }
            try verifyChecksum(header)
            let type = header[156]
            let size = try number(header, 124, 12, "size")
            guard size >= 0 else { throw corrupt("negative size") }
            switch type {
            case UInt8(ascii: "x"), UInt8(ascii: "g"), UInt8(ascii: "L"), UInt8(ascii: "K"):
                extensionHeaders += 1
                guard extensionHeaders <= limits.extensionHeadersPerEntry else {
                    throw StorageError(
                        .limitExceeded,
                        "\(what) has more than \(limits.extensionHeadersPerEntry) pax/GNU extension headers in a row; refusing the archive")
                }
                let body = try readMetadata(size)
                switch type {
                case UInt8(ascii: "x"):
                    pax.merge(try parsePax(body)) { $1 }
                case UInt8(ascii: "g"):
                    let records = try parsePax(body)
                    globalPax.merge(records) { $1 }
                    let globalBytes = globalPax.reduce(0) { $0 + $1.key.count + $1.value.count }
                    guard globalBytes <= limits.paxGlobalBytes else {
                        throw StorageError(
                            .limitExceeded,
                            "\(what) has more than \(limits.paxGlobalBytes) bytes of pax global headers; refusing the archive")
                    }
                    pax.merge(records) { $1 }
                case UInt8(ascii: "L"):
                    longName = try gnuLongName(body)
                default:
                    longLink = try gnuLongName(body)
                }
                continue
            default:
                break
            }
            let kind: TarEntry.Kind
            switch type {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): kind = .regular
            case UInt8(ascii: "1"): kind = .hardLink
            case UInt8(ascii: "2"): kind = .symbolicLink
            case UInt8(ascii: "3"): kind = .characterDevice
            case UInt8(ascii: "4"): kind = .blockDevice
            case UInt8(ascii: "5"): kind = .directory
            case UInt8(ascii: "6"): kind = .fifo
            default:
                throw StorageError(
                    .unsupported,
                    "\(what): an entry has unsupported tar type '\(ArchivePath.printable([type]))'; re-export the image with a standard tar"
                )
            }
            let isDevice = kind == .characterDevice || kind == .blockDevice
            var entry = TarEntry(
                path: [], kind: kind, size: size,
                mode: try unsigned(try number(header, 100, 8, "mode"), "mode"),
                uid: try unsigned(try number(header, 108, 8, "uid"), "uid"),
                gid: try unsigned(try number(header, 116, 8, "gid"), "gid"),
                modificationTime: Int(try number(header, 136, 12, "mtime")),
                linkTarget: longLink ?? cString(header[157..<257]),
                // Only devices use these; other entries often leave garbage there.
                deviceMajor: isDevice ? try unsigned(try number(header, 329, 8, "devmajor"), "devmajor") : 0,
                deviceMinor: isDevice ? try unsigned(try number(header, 337, 8, "devminor"), "devminor") : 0,
                extendedAttributes: [])
            let isPosixUstar = header[257..<263].elementsEqual(Array("ustar\0".utf8))
            let prefix = isPosixUstar ? cString(header[345..<500]) : []
            let name = cString(header[0..<100])
            entry.path = longName ?? (prefix.isEmpty ? name : prefix + [ArchivePath.slash] + name)
            try apply(pax, to: &entry)
            // Old tars mark directories only with a trailing slash.
            if entry.kind == .regular && entry.path.last == ArchivePath.slash { entry.kind = .directory }
            // Like Go's archive/tar: only regular files carry data blocks.
            if entry.kind != .regular { entry.size = 0 }
            guard entry.size <= limits.layerBytes else {
                throw StorageError(
                    .limitExceeded,
                    "\(what): entry '\(entry.printablePath)' is \(entry.size) bytes, more than the \(limits.layerBytes)-byte limit for a layer; refusing the image"
                )
            }
            remaining = entry.size
            padding = (512 - entry.size % 512) % 512
            return entry
        }
    }

    /// Reads up to buffer.count bytes of the current entry's content; 0 at its end.
    mutating func readContent(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard remaining > 0, buffer.count > 0 else { return 0 }
        let want = Int(min(Int64(buffer.count), remaining))
        let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want])
        try source.readExactly(into: chunk, what: what)
        remaining -= Int64(want)
        return want
    }

    private mutating func skipRest() throws {
        let (total, overflow) = remaining.addingReportingOverflow(padding)
        guard !overflow else { throw corrupt("entry size out of range") }
        try source.skip(total, what: what)
        remaining = 0
        padding = 0
    }

    private mutating func readMetadata(_ size: Int64) throws -> [UInt8] {
        guard size <= Int64(limits.paxHeaderBytes) else {
            throw StorageError(
                .limitExceeded,
                "\(what) has an extension header of \(size) bytes, more than the \(limits.paxHeaderBytes)-byte limit; refusing the archive")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        try bytes.withUnsafeMutableBytes { try source.readExactly(into: $0, what: what) }
        try source.skip((512 - size % 512) % 512, what: what)
        return bytes
    }

    /// A GNU long name or link: the name, NUL-terminated. A NUL inside the name is refused
    /// rather than cut at (the kernel would see a different name than the archive says).
    private func gnuLongName(_ body: [UInt8]) throws -> [UInt8] {
        guard let end = body.firstIndex(of: 0) else { return body }
        guard body[end...].allSatisfy({ $0 == 0 }) else {
            throw StorageError(.badInput, "\(what): a GNU long name contains a NUL byte; refusing the image")
        }
        return Array(body[..<end])
    }

    private func apply(_ pax: [[UInt8]: [UInt8]], to entry: inout TarEntry) throws {
        for (key, value) in pax {
            switch key {
            case Self.paxPath: entry.path = value
            case Self.paxLinkPath: entry.linkTarget = value
            case Self.paxSize: entry.size = try decimal(value, "size")
            case Self.paxUID: entry.uid = try unsigned(try decimal(value, "uid"), "uid")
            case Self.paxGID: entry.gid = try unsigned(try decimal(value, "gid"), "gid")
            case Self.paxMTime: entry.modificationTime = Int(try decimal(value, "mtime", signedFraction: true))
            default:
                if key.starts(with: Self.paxXattrPrefix) {
                    let name = Array(key.dropFirst(Self.paxXattrPrefix.count))
                    guard !name.isEmpty, !name.contains(0) else { throw corrupt("bad xattr name in a pax header") }
                    entry.extendedAttributes.append((name, value))
                } else if key.starts(with: Self.paxSparsePrefix) {
                    throw StorageError(.unsupported, "\(what): sparse tar entries are not supported; re-export the image without --sparse")
                }
            }
        }
        entry.extendedAttributes.sort { $0.name.lexicographicallyPrecedes($1.name) }
    }

    private static var paxPath: [UInt8] { Array("path".utf8) }
    private static var paxLinkPath: [UInt8] { Array("linkpath".utf8) }
    private static var paxSize: [UInt8] { Array("size".utf8) }
    private static var paxUID: [UInt8] { Array("uid".utf8) }
    private static var paxGID: [UInt8] { Array("gid".utf8) }
    private static var paxMTime: [UInt8] { Array("mtime".utf8) }
    private static var paxXattrPrefix: [UInt8] { Array("SCHILY.xattr.".utf8) }
    private static var paxSparsePrefix: [UInt8] { Array("GNU.sparse.".utf8) }

    /// pax records: "LEN key=value\n", LEN (decimal) counting the whole record.
    private func parsePax(_ bytes: [UInt8]) throws -> [[UInt8]: [UInt8]] {
        var records: [[UInt8]: [UInt8]] = [:]
        var index = 0
        while index < bytes.count {
            if bytes[index] == 0 { break }
            guard let space = bytes[index...].firstIndex(of: UInt8(ascii: " ")), space > index else {
                throw corrupt("malformed pax record")
            }
            var length = 0
            for digit in bytes[index..<space] {
                guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else { throw corrupt("malformed pax record length") }
                let (times10, overflow1) = length.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = times10.addingReportingOverflow(Int(digit - UInt8(ascii: "0")))
                guard !overflow1 && !overflow2 else { throw corrupt("pax record length out of range") }
                length = sum
            }
            let (end, overflow) = index.addingReportingOverflow(length)
            guard !overflow, end <= bytes.count, end > space + 1, bytes[end - 1] == UInt8(ascii: "\n") else {
                throw corrupt("malformed pax record")
            }
            let record = bytes[(space + 1)..<(end - 1)]
            guard let equals = record.firstIndex(of: UInt8(ascii: "=")) else { throw corrupt("malformed pax record") }
            records[Array(record[record.startIndex..<equals])] = Array(record[(equals + 1)...])
            index = end
        }
        return records
    }

    private func verifyChecksum(_ header: [UInt8]) throws {
        let stored = try number(header, 148, 8, "checksum")
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (i, byte) in header.enumerated() {
            let value = (148..<156).contains(i) ? 0x20 : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard stored == unsigned || stored == signed else {
            throw StorageError(.badInput, "\(what) is not a valid tar archive (header checksum mismatch); the file is corrupt or not a tar")
        }
    }

    /// A numeric header field: octal ASCII (spaces or NULs around the digits),
    /// or base-256 when the top bit of the first byte is set (GNU/star: two's complement,
    /// bit 6 of the first byte is the sign). Out of range for Int64 is an error, never a trap.
    private func number(_ header: [UInt8], _ offset: Int, _ length: Int, _ field: String) throws -> Int64 {
        let bytes = header[offset..<(offset + length)]
        guard let first = bytes.first else { return 0 }
        if first & 0x80 != 0 {
            var value = Int64(first & 0x3f) - (first & 0x40 != 0 ? 64 : 0)
            for byte in bytes.dropFirst() {
                let (shifted, overflow1) = value.multipliedReportingOverflow(by: 256)
                let (sum, overflow2) = shifted.addingReportingOverflow(Int64(byte))
                guard !overflow1 && !overflow2 else { throw corrupt("\(field) field out of range") }
                value = sum
            }
            return value
        }
        var value: Int64 = 0
        var rest = bytes.drop { $0 == UInt8(ascii: " ") || $0 == 0 }
        while let byte = rest.first, byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "7") {
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 8)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int64(byte - UInt8(ascii: "0")))
            guard !overflow1 && !overflow2 else { throw corrupt("\(field) field out of range") }
            value = sum
            rest = rest.dropFirst()
        }
        guard rest.allSatisfy({ $0 == 0 || $0 == UInt8(ascii: " ") }) else { throw corrupt("non-octal \(field) field") }
        return value
    }

    /// A value that must fit a 32-bit unsigned field (mode, ids, device numbers).
    private func unsigned(_ value: Int64, _ field: String) throws -> UInt32 {
        guard let result = UInt32(exactly: value) else { throw corrupt("\(field) \(value) out of range") }
        return result
    }

    /// A pax decimal: digits only, or for mtime an optional sign and fraction (the fraction is dropped).
    private func decimal(_ bytes: [UInt8], _ key: String, signedFraction: Bool = false) throws -> Int64 {
        var digits = bytes[...]
        var negative = false
        if signedFraction {
            if digits.first == UInt8(ascii: "-") {
                negative = true
                digits = digits.dropFirst()
            }
            if let point = digits.firstIndex(of: UInt8(ascii: ".")) {
                guard digits[(point + 1)...].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                    throw corrupt("pax \(key) '\(ArchivePath.printable(bytes))' is not a number")
                }
                digits = digits[..<point]
            }
        }
        guard !digits.isEmpty else { throw corrupt("pax \(key) '\(ArchivePath.printable(bytes))' is not a number") }
        var value: Int64 = 0
        for digit in digits {
            guard digit >= UInt8(ascii: "0") && digit <= UInt8(ascii: "9") else {
                throw corrupt("pax \(key) '\(ArchivePath.printable(bytes))' is not a number")
            }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(Int64(digit - UInt8(ascii: "0")))
            guard !overflow1 && !overflow2 else { throw corrupt("pax \(key) out of range") }
            value = sum
        }
        return negative ? -value : value
    }

    private func cString<C: Collection>(_ bytes: C) -> [UInt8] where C.Element == UInt8 {
        Array(bytes.prefix { $0 != 0 })
    }

    private func corrupt(_ detail: String) -> StorageError {
        StorageError(.badInput, "\(what) is a corrupt tar archive (\(detail)); export or fetch it again")
    }
}
