/// A registry image reference, normalised the way Docker does:
/// `busybox` is `docker.io/library/busybox:latest`.
public struct ImageReference: Sendable, Equatable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: String?

    public init(parsing text: String) throws {
        let invalid = StorageError(.badInput, "'\(text)' is not an image reference; use [REGISTRY/]NAME[:TAG][@sha256:DIGEST]")
        // Printable ASCII only: then Characters and bytes agree, and every check below holds.
        guard text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else { throw invalid }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            let digest = String(rest[rest.index(after: at)...])
            guard Digest.isValid(digest) else { throw invalid }
            self.digest = digest
            rest = rest[..<at]
        }
        var parts = rest.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        guard !parts.isEmpty, parts.allSatisfy({ !$0.isEmpty }) else { throw invalid }
        if parts.count > 1, parts[0].contains(".") || parts[0].contains(":") || parts[0] == "localhost" {
            registry = parts.removeFirst()
        } else {
            registry = "docker.io"
        }
        if let last = parts.last, let colon = last.lastIndex(of: ":") {
            tag = String(last[last.index(after: colon)...])
            parts[parts.count - 1] = String(last[..<colon])
        }
        if registry == "docker.io" && parts.count == 1 { parts.insert("library", at: 0) }
        repository = parts.joined(separator: "/")
        // Checked on bytes (names come from archives too, and end up in URLs and on screen):
        // the distribution spec's character sets.
        guard Self.isRegistry(registry), Self.isRepository(repository), tag.map(Self.isTag) ?? true else { throw invalid }
        if tag == nil && digest == nil { tag = "latest" }
    }

    public var description: String {
        var text = registry + "/" + repository
        if let tag { text += ":" + tag }
        if let digest { text += "@" + digest }
        return text
    }

    private static func isRegistry(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return !bytes.isEmpty && bytes.count <= 255 && bytes.allSatisfy { isAlphanumeric($0) || Array(".-:[]".utf8).contains($0) }
    }

    private static func isRepository(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return !bytes.isEmpty && bytes.count <= 255
            && bytes.allSatisfy {
                ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z")) || ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9"))
                    || Array("._-/".utf8).contains($0)
            }
    }

    /// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
    private static func isTag(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, bytes.count <= 128, isAlphanumeric(first) || first == UInt8(ascii: "_") else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || Array("_.-".utf8).contains($0) }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }

    /// What the registry API calls the manifest: the digest if pinned, else the tag.
    var manifestReference: String { digest ?? tag ?? "latest" }
}

/// `sha256:<64 hex>` digests, the only algorithm rund accepts. Checked on bytes: the hex part
/// becomes a file name in the store, so "looks like a hex digit" is not good enough.
enum Digest {
    static func isValid(_ digest: String) -> Bool {
        let bytes = Array(digest.utf8)
        guard bytes.count == 71, bytes.starts(with: Array("sha256:".utf8)) else { return false }
        return bytes.dropFirst(7).allSatisfy {
            ($0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9")) || ($0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "f"))
        }
    }

    static func hex(_ digest: String) -> String { String(decoding: Array(digest.utf8).dropFirst(7), as: UTF8.self) }

    static func check(_ digest: String, what: String) throws {
        guard isValid(digest) else {
            throw StorageError(.unsupported, "\(what): digest '\(digest)' is not a sha256 digest; rund verifies sha256 only")
        }
    }
}
