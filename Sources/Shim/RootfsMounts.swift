/// What containerd's rootfs mounts (CreateTaskRequest.rootfs) make the container's root from.
/// rund never mounts them on the host: the image part becomes a shared EROFS, and writes go to
/// the sandbox's own writable layer (containerd's upper directory stays empty).
enum RootfsSource: Sendable, Equatable {
    /// overlayfs lower directories, top-most first: a committed snapshot chain (cached EROFS).
    case layers([String])
    /// A directory to pack as is (no mounts: the client prepared `<bundle>/rootfs`; or a snapshot
    /// with no parent, handed over as a read-write bind).
    case directory(String)

    /// Reads the mounts the overlayfs and native snapshotters hand out (one overlay mount, or
    /// one bind), refusing anything else with one line.
    static func parse(_ mounts: [Containerd_Types_Mount], bundle: String) throws -> RootfsSource {
        guard let mount = mounts.first else { return .directory(bundle + "/rootfs") }
        guard mounts.count == 1 else {
            throw ShimError(.invalidArgument, "rund takes one rootfs mount, got \(mounts.count): use the overlayfs or native snapshotter")
        }
        switch mount.type {
        case "overlay":
            let lowers = mount.options.filter { $0.hasPrefix("lowerdir=") }
            guard lowers.count == 1, let option = lowers.first else {
                throw ShimError(.invalidArgument, "the overlay rootfs mount has no single lowerdir option")
            }
            let directories = option.dropFirst("lowerdir=".count).split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard !directories.contains(where: \.isEmpty) else {
                throw ShimError(.invalidArgument, "the overlay rootfs mount has an empty lower directory")
            }
            return .layers(directories)
        case "bind", "rbind":
            guard mount.source.hasPrefix("/") else {
                throw ShimError(.invalidArgument, "the bind rootfs mount's source \(mount.source.prefix(200)) is not absolute")
            }
            // A read-only bind is a committed snapshot (a view): cacheable like a layer chain.
            return mount.options.contains("ro") ? .layers([mount.source]) : .directory(mount.source)
        default:
            throw ShimError(
                .invalidArgument, "rund cannot use a rootfs mount of type \(mount.type.prefix(40)): use the overlayfs or native snapshotter"
            )
        }
    }
}
