/// Sandbox IDs come from users and end up in cgroup directory names: only a safe alphabet.
public enum SandboxID {
    public static let maximumLength = 64

    /// Returns the ID if it is 1-64 characters of `A-Z a-z 0-9 _ . -` (and not `.` or `..`).
    public static func validate(_ id: String) throws -> String {
        let bytes = Array(id.utf8)
        let allowed = bytes.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x5F || byte == 0x2E || byte == 0x2D
        }
        guard !bytes.isEmpty, bytes.count <= maximumLength, allowed, id != ".", id != ".." else {
            throw CgroupError(
                "invalid sandbox id \"\(id.prefix(80))\": use 1-\(maximumLength) characters from A-Z a-z 0-9 _ . -")
        }
        return id
    }
}
