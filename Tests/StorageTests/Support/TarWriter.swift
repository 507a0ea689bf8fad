import Foundation

/// Writes tar archives byte by byte, so tests can make exactly the (hostile) archives they need.
struct TarWriter {
    private(set) var bytes: [UInt8] = []

    enum TypeFlag: UInt8 {
        case file = 0x30, hardLink = 0x31, symlink = 0x32, character = 0x33, block = 0x34, directory = 0x35, fifo = 0x36
    }

    mutating func file(
        _ path: String, _ content: [UInt8], mode: Int = 0o644, uid: Int = 0, gid: Int = 0,
        xattrs: [String: String] = [:]
    ) {
        entry(path, .file, content: content, mode: mode, uid: uid, gid: gid, xattrs: xattrs)
    }

    mutating func file(_ path: String, _ text: String, mode: Int = 0o644) {
        file(path, Array(text.utf8), mode: mode)
    }

    mutating func directory(_ path: String, mode: Int = 0o755, uid: Int = 0, gid: Int = 0) {
        entry(path, .directory, mode: mode, uid: uid, gid: gid)
    }

    mutating func symlink(_ path: String, to target: String) {
        entry(path, .symlink, mode: 0o777, link: target)
    }

    mutating func hardLink(_ path: String, to target: String) {
        entry(path, .hardLink, mode: 0o644, link: target)
    }

    mutating func device(_ path: String, character: Bool, major: Int, minor: Int, mode: Int = 0o666) {
        entry(path, character ? .character : .block, mode: mode, major: major, minor: minor)
    }

    mutating func fifo(_ path: String, mode: Int = 0o644) {
        entry(path, .fifo, mode: mode)
    }

    /// Two zero blocks end the archive.
    mutating func finish() -> [UInt8] {
        bytes += [UInt8](repeating: 0, count: 1024)
        return bytes
    }

    /// An entry named by raw bytes (no String on the way), with optional raw pax records before it,
    /// and `tamper` to rewrite header fields before the checksum is computed.
    mutating func raw(
        _ name: [UInt8], _ type: TypeFlag = .file, content: [UInt8] = [], mode: Int = 0o644,
        link: [UInt8] = [], pax: [([UInt8], [UInt8])] = [], tamper: ((inout [UInt8]) -> Void)? = nil
    ) {
        if !pax.isEmpty {
            let records = Self.paxRecords(pax)
            appendHeader(
                name: Array("PaxHeaders/x".utf8), type: 0x78, size: records.count, mode: 0o644, uid: 0, gid: 0, link: [], major: 0, minor: 0
            )
            appendData(records)
        }
        appendHeader(
            name: Array(name.prefix(100)), type: type.rawValue, size: content.count, mode: mode, uid: 0, gid: 0,
            link: Array(link.prefix(100)), major: 0, minor: 0, tamper: tamper)
        appendData(content)
    }

    /// An extension header (pax 'x'/'g', GNU 'L'/'K') of exactly these bytes.
    mutating func extensionHeader(type: UInt8, _ body: [UInt8], tamper: ((inout [UInt8]) -> Void)? = nil) {
        appendHeader(
            name: Array("././@LongLink".utf8), type: type, size: body.count, mode: 0o644, uid: 0, gid: 0, link: [],
            major: 0, minor: 0, tamper: tamper)
        appendData(body)
    }

    /// Appends bytes as they are (for truncated or padded archives).
    mutating func append(_ data: [UInt8]) { bytes += data }

    static func paxRecords(_ records: [([UInt8], [UInt8])]) -> [UInt8] {
        var out: [UInt8] = []
        for (key, value) in records {
            let body = [UInt8(ascii: " ")] + key + [UInt8(ascii: "=")] + value + [UInt8(ascii: "\n")]
            var length = body.count + 1
            while String(length).utf8.count + body.count != length { length += 1 }
            out += Array(String(length).utf8) + body
        }
        return out
    }

    mutating func entry(
        _ path: String, _ type: TypeFlag, content: [UInt8] = [], mode: Int, uid: Int = 0, gid: Int = 0,
        link: String = "", major: Int = 0, minor: Int = 0, xattrs: [String: String] = [:]
    ) {
        var pax: [(String, String)] = xattrs.sorted { $0.key < $1.key }.map { ("SCHILY.xattr." + $0.key, $0.value) }
        if path.utf8.count > 100 { pax.append(("path", path)) }
        if link.utf8.count > 100 { pax.append(("linkpath", link)) }
        if !pax.isEmpty {
            var records: [UInt8] = []
            for (key, value) in pax {
                let body = " \(key)=\(value)\n"
                var length = body.utf8.count + 1
                while String(length).count + body.utf8.count != length { length += 1 }
                records += Array((String(length) + body).utf8)
            }
            appendHeader(
                name: Array("PaxHeaders/x".utf8), type: 0x78, size: records.count, mode: 0o644, uid: 0, gid: 0, link: [], major: 0, minor: 0
            )
            appendData(records)
        }
        appendHeader(
            name: Array(path.utf8.prefix(100)), type: type.rawValue, size: content.count, mode: mode, uid: uid, gid: gid,
            link: Array(link.utf8.prefix(100)), major: major, minor: minor)
        appendData(content)
    }

    private mutating func appendData(_ data: [UInt8]) {
        bytes += data
        bytes += [UInt8](repeating: 0, count: (512 - data.count % 512) % 512)
    }

    private mutating func appendHeader(
        name: [UInt8], type: UInt8, size: Int, mode: Int, uid: Int, gid: Int,
        link: [UInt8], major: Int, minor: Int, tamper: ((inout [UInt8]) -> Void)? = nil
    ) {
        var header = [UInt8](repeating: 0, count: 512)
        func put<C: Collection>(_ bytes: C, _ offset: Int, _ length: Int) where C.Element == UInt8 {
            for (i, byte) in bytes.prefix(length).enumerated() { header[offset + i] = byte }
        }
        func put(_ text: String, _ offset: Int, _ length: Int) { put(Array(text.utf8), offset, length) }
        func octal(_ value: Int, _ offset: Int, _ length: Int) {
            put(String(String(value, radix: 8).suffix(length - 1)).leftPad(length - 1), offset, length - 1)
        }
        put(name, 0, 100)
        octal(mode, 100, 8)
        octal(uid, 108, 8)
        octal(gid, 116, 8)
        octal(size, 124, 12)
        octal(1_700_000_000, 136, 12)
        header[156] = type
        put(link, 157, 100)
        put("ustar\0", 257, 6)
        put("00", 263, 2)
        octal(major, 329, 8)
        octal(minor, 337, 8)
        tamper?(&header)
        Self.seal(&header)
        bytes += header
    }

    /// Writes the header checksum (unless a test has already put bytes there on purpose).
    static func seal(_ header: inout [UInt8]) {
        guard header[148..<156].allSatisfy({ $0 == 0 }) else { return }
        for i in 148..<156 { header[i] = 0x20 }
        let sum = header.reduce(0) { $0 + Int($1) }
        for (i, byte) in (String(String(sum, radix: 8)).leftPad(6) + "\0 ").utf8.enumerated() { header[148 + i] = byte }
    }
}

extension String {
    func leftPad(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
