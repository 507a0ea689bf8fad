#if canImport(Glibc)
import Glibc
#endif
import HostOS

extension ImageStore {
    /// An EROFS of a host directory for one sandbox (`rund run --rootfs DIR`), built like an
    /// image's in a staging directory that is removed before this returns: the caller gets the
    /// only reference, an open read-only descriptor, so the file vanishes with it on every path
    /// (a crash during the build leaves a staging directory that `rund gc` removes).
    public func buildThrowawayRootfs(of directory: String) throws -> FileDescriptor {
        do {
            try FileDescriptor.openDirectory(directory).close()
        } catch {
            throw StorageError(.notFound, "cannot use \(directory) as the container's root: \(error)")
        }
        try prepare()
        let staging = try makeStaging()
        defer { removeStaging(staging) }
        let output = staging.path + "/rootfs.erofs"
        try EROFSBuilder.build(tree: directory, output: output)
        return try FileDescriptor.open(output, O_RDONLY)
    }
}
