/// Paths inside an image tree, checked lexically before anything touches the disk.
enum ArchivePath {
    /// The components of a member path, refusing anything that could leave the tree.
    static func components(_ path: String, what: String) throws -> [String] {
        if path.hasPrefix("/") {
            throw StorageError(.badInput, "\(what): entry '\(path)' is an absolute path; refusing an image that writes outside its root")
        }
        var parts: [String] = []
        for part in path.split(separator: "/") where part != "." {
            if part == ".." {
                throw StorageError(.badInput, "\(what): entry '\(path)' contains '..'; refusing an image that writes outside its root")
            }
            parts.append(String(part))
        }
        return parts
    }

    /// True when a relative symlink target, read from the directory `parent`, stays inside the tree.
    /// Absolute targets are resolved inside the container's root, so they are fine.
    static func symlinkStaysInside(target: String, parent: [String]) -> Bool {
        if target.hasPrefix("/") { return true }
        var depth = parent.count
        for part in target.split(separator: "/") where part != "." {
            if part == ".." {
                depth -= 1
                if depth < 0 { return false }
            } else {
                depth += 1
            }
        }
        return true
    }
}
