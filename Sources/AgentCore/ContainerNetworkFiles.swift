#if canImport(Glibc)
import Glibc
#endif
import HostOS
import TTRPC

/// /etc/hosts and /etc/resolv.conf of a container on a networked guest, written into its root
/// (the overlay's upper layer) before the container runs. The image is hostile: both are
/// opened beneath the root's descriptor, never through a symlink, and an image whose /etc,
/// /etc/hosts or /etc/resolv.conf is not a directory or regular file is refused rather than
/// written through or replaced.
enum ContainerNetworkFiles {
    /// localhost, the container's hostname on the interface's first address (when it has one),
    /// then the requested entries.
    static func hosts(_ network: GuestNetworkPlan, hostname: String) -> String {
        var lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost"]
        if !hostname.isEmpty, let address = network.addresses.first?.address {
            lines.append("\(address)\t\(hostname)")
        }
        for entry in network.hosts {
            lines.append("\(entry.address)\t\(entry.names.joined(separator: " "))")
        }
        return lines.map { $0 + "\n" }.joined()
    }

    static func resolvConf(_ network: GuestNetworkPlan) -> String {
        var lines = network.nameservers.map { "nameserver \($0)" }
        if !network.searchDomains.isEmpty { lines.append("search " + network.searchDomains.joined(separator: " ")) }
        return lines.map { $0 + "\n" }.joined()
    }

    /// Writes both files under `root` (a directory the agent made, e.g. the mounted overlay).
    /// A missing /etc is created.
    static func write(_ network: GuestNetworkPlan, hostname: String, root: String) throws(TTRPCStatus) {
        try checkHostname(hostname)
        do {
            let rootDirectory = try FileDescriptor.openDirectory(root)
            let etc = try openEtc(in: rootDirectory)
            try writeRegularFile(in: etc, "hosts", hosts(network, hostname: hostname))
            try writeRegularFile(in: etc, "resolv.conf", resolvConf(network))
        } catch let status as TTRPCStatus {
            throw status
        } catch {
            throw TTRPCStatus(.failedPrecondition, "cannot write /etc/hosts and /etc/resolv.conf: \(error)")
        }
    }

    /// A hostname goes on a line of /etc/hosts: it must not add a line or a field there. `_`
    /// is let through, as resolvers do, because the default hostname is the sandbox id.
    static func checkHostname(_ hostname: String) throws(TTRPCStatus) {
        guard hostname.utf8.allSatisfy({ GuestNetworkPlan.isNameByte($0) || $0 == UInt8(ascii: "_") }) else {
            throw TTRPCStatus(
                .invalidArgument, "hostname \"\(RawName.printable(hostname.utf8))\" must be [A-Za-z0-9_.-] to go in /etc/hosts")
        }
    }

    /// Resolution stays beneath the directory and follows no link of any kind.
    private static let confined: ResolveFlags = [.beneath, .noSymlinks, .noMagicLinks]

    private static func openEtc(in root: FileDescriptor) throws -> FileDescriptor {
        let name = Array("etc".utf8)
        if let existing = try FileSystem.status(at: root, name) {
            guard existing.st_mode & S_IFMT == S_IFDIR else { throw refusal("/etc", existing, wanted: "a directory") }
        } else {
            try FileSystem.makeDirectory(at: root, name, mode: 0o755)
        }
        return try FileSystem.openat2(at: root, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, resolve: confined)
    }

    /// Checked before the open and again on the opened file: a FIFO or device must not be
    /// written (O_NONBLOCK keeps a FIFO's open from waiting for a reader).
    private static func writeRegularFile(in etc: FileDescriptor, _ name: String, _ content: String) throws {
        let path = "/etc/" + name
        if let existing = try FileSystem.status(at: etc, Array(name.utf8)), existing.st_mode & S_IFMT != S_IFREG {
            throw refusal(path, existing, wanted: "a regular file")
        }
        let file = try FileSystem.openat2(
            at: etc, Array(name.utf8), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_NONBLOCK, mode: 0o644, resolve: confined)
        defer { file.close() }
        let opened = try FileSystem.status(of: file)
        guard opened.st_mode & S_IFMT == S_IFREG else { throw refusal(path, opened, wanted: "a regular file") }
        try file.writeAll(content)
    }

    private static func refusal(_ path: String, _ found: stat, wanted: String) -> TTRPCStatus {
        let kind =
            switch found.st_mode & S_IFMT {
            case S_IFLNK: "a symbolic link"
            case S_IFDIR: "a directory"
            default: "a special file"
            }
        return TTRPCStatus(
            .failedPrecondition,
            "the image's \(path) is \(kind), not \(wanted): the agent does not write the container's network files through or over it")
    }
}
