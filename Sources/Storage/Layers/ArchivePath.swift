import HostOS

/// Member names of archives and layers, checked on their bytes before anything touches the disk.
///
/// The kernel resolves bytes, and "/" (0x2f) is its only separator, so that is all this looks at:
/// never Swift Characters (a "/" followed by a combining mark is one Character that is not "/",
/// CR LF is one Character) and never a decoded String (invalid UTF-8 is repaired to U+FFFD).
/// This check is the first line; `LayerApplier` also resolves every path with openat2 beneath
/// the tree's root, so a name that got past it still could not leave the tree.
enum ArchivePath {
    static let slash = UInt8(ascii: "/")
    static let dot = UInt8(ascii: ".")

    /// The components of a member name. Accepted: one leading "./" (what `tar -C dir .` writes),
    /// "." or "./" alone (the root: no components), and a trailing "/" when `directory`. Refused:
    /// NUL, absolute names, empty, "." or ".." components, names longer than the kernel takes.
    static func components(_ name: [UInt8], directory: Bool = false, what: String) throws -> [[UInt8]] {
        func refuse(_ reason: String) -> StorageError {
            StorageError(.badInput, "\(what): entry '\(printable(name))' \(reason); refusing the image")
        }
        if name.contains(0) { throw refuse("contains a NUL byte") }
        if name.first == slash { throw refuse("is an absolute path") }
        if name.count > StorageLimits.pathBytes { throw refuse("is longer than \(StorageLimits.pathBytes) bytes") }
        var body = name[...]
        if body.starts(with: [dot, slash]) { body = body.dropFirst(2) }
        if body.isEmpty || body.elementsEqual([dot]) {
            guard !name.isEmpty else { throw refuse("has an empty name") }
            return []
        }
        if body.last == slash {
            guard directory else { throw refuse("ends in '/' but is not a directory") }
            body = body.dropLast()
        }
        var parts: [[UInt8]] = []
        for part in body.split(separator: slash, omittingEmptySubsequences: false) {
            if part.isEmpty { throw refuse("has an empty component ('//')") }
            if part.elementsEqual([dot]) { throw refuse("has a '.' component") }
            if part.elementsEqual([dot, dot]) { throw refuse("contains '..'") }
            if part.count > StorageLimits.nameComponentBytes {
                throw refuse("has a component longer than \(StorageLimits.nameComponentBytes) bytes")
            }
            parts.append(Array(part))
        }
        return parts
    }

    /// The components joined with "/": the normalised name, as bytes.
    static func joined(_ components: [[UInt8]]) -> [UInt8] {
        Array(components.joined(separator: [slash]))
    }

    /// True when a relative symlink target, read from the directory `depth` levels below the root,
    /// stays inside the tree. Absolute targets are resolved inside the container's root, so they
    /// are fine. A target with NUL, an empty one or one longer than PATH_MAX is never fine.
    static func symlinkStaysInside(target: [UInt8], depth: Int) -> Bool {
        if target.isEmpty || target.contains(0) || target.count > StorageLimits.pathBytes { return false }
        if target.first == slash { return true }
        var level = depth
        for part in target.split(separator: slash) where !part.elementsEqual([dot]) {
            if part.elementsEqual([dot, dot]) {
                level -= 1
                if level < 0 { return false }
            } else {
                level += 1
            }
        }
        return true
    }

    /// True for a name a whiteout marks: `.wh.NAME`.
    static func isWhiteout(_ name: [UInt8]) -> Bool { name.starts(with: whiteoutPrefix) }
    static let whiteoutPrefix = Array(".wh.".utf8)
    /// `.wh..wh..opq`: the directory holding it hides everything lower layers put there.
    static let opaqueMarker = Array(".wh..wh..opq".utf8)
    /// `.wh..wh.*` other than the opaque marker: AUFS bookkeeping, never part of the image.
    static let aufsMetadataPrefix = Array(".wh..wh.".utf8)

    /// A name for messages: one line, unambiguous (see `RawName.printable`).
    static func printable<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        RawName.printable(bytes)
    }
}
