/// A registry image reference, normalised the way Docker does:
/// `busybox` is `docker.io/library/busybox:latest`.
public struct ImageReference: Sendable, Equatable, CustomStringConvertible {
    public var registry: String
    public var repository: String
    public var tag: String?
    public var digest: String?

    public init(parsing text: String) throws {
        let invalid = StorageError(.badInput, "'\(text)' is not an image reference; use [REGISTRY/]NAME[:TAG][@sha256:DIGEST]")
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
            guard let tag, !tag.isEmpty, tag.count <= 128 else { throw invalid }
        }
        if registry == "docker.io" && parts.count == 1 { parts.insert("library", at: 0) }
        repository = parts.joined(separator: "/")
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789._-/")
        guard !repository.isEmpty, repository.allSatisfy({ allowed.contains($0) }) else { throw invalid }
        if tag == nil && digest == nil { tag = "latest" }
    }

    public var description: String {
        var text = registry + "/" + repository
        if let tag { text += ":" + tag }
        if let digest { text += "@" + digest }
        return text
    }

    /// What the registry API calls the manifest: the digest if pinned, else the tag.
    var manifestReference: String { digest ?? tag ?? "latest" }
}

/// `sha256:<64 hex>` digests, the only algorithm rund accepts.
enum Digest {
    static func isValid(_ digest: String) -> Bool {
        guard digest.hasPrefix("sha256:") else { return false }
        let hex = digest.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }

    static func hex(_ digest: String) -> String { String(digest.dropFirst(7)) }

    static func check(_ digest: String, what: String) throws {
        guard isValid(digest) else {
            throw StorageError(.unsupported, "\(what): digest '\(digest)' is not a sha256 digest; rund verifies sha256 only")
        }
    }
}
