/// /proc/self/mountinfo, parsed just enough to find cgroup mounts.
enum MountInfo {
    struct Entry: Equatable {
        let device: String
        let root: String
        let mountPoint: String
        let filesystemType: String
        let superOptions: [String]
    }

    /// Format: `id parent major:minor root mountpoint options [optional...] - fstype source superoptions`.
    static func parse(_ text: String) -> [Entry] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ").map(String.init)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 4 else { return nil }
            return Entry(
                device: fields[2], root: unescape(fields[3]), mountPoint: unescape(fields[4]),
                filesystemType: fields[dash + 1],
                superOptions: fields[dash + 3].split(separator: ",").map(String.init))
        }
    }

    /// Undoes the kernel's octal escapes (`\040` for a space) in paths.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        let source = Array(field.utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "\\"), index + 3 < source.count,
                let value = UInt8(String(decoding: source[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
