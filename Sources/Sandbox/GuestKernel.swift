import HostOS

/// Which guest kernel a sandbox boots. Both live in the state root's kernel cache:
/// `kernel/guest` is rund's own (Debian's kernel source with kernel/rund-guest.config, every
/// driver built in; scripts/build-guest-kernel), `kernel/current` is Debian's stock cloud kernel
/// (its drivers are modules, carried in the initramfs). docs/kernel.md.
public enum GuestKernel: String, Sendable, CaseIterable, Codable {
    case rund
    case stock

    /// The cache entry's name under `<root>/kernel`.
    var cacheEntry: String {
        switch self {
        case .rund: "guest"
        case .stock: "current"
        }
    }

    /// The kernel a sandbox boots when not told: rund's own when it has been built, else the
    /// stock one.
    public static func preferred(stateRoot: String) -> GuestKernel {
        FileSystem.exists(GuestKernel.rund.directory(stateRoot: stateRoot) + "/vmlinuz") ? .rund : .stock
    }

    /// The cache directory of this kernel (which may not exist).
    public func directory(stateRoot: String) -> String {
        stateRoot + "/kernel/" + cacheEntry
    }

    /// The file a sandbox boots from a cache directory: the uncompressed `vmlinux` when the
    /// entry has one (rund's own kernel: no decompression in the guest), else the bzImage.
    public static func bootImage(in directory: String) -> String {
        FileSystem.exists(directory + "/vmlinux") ? directory + "/vmlinux" : directory + "/vmlinuz"
    }

    /// The cache directory of `choice` (nil: `preferred`), or an error saying it is not there.
    public static func directory(stateRoot: String, choice: GuestKernel?) throws -> String {
        let kernel = choice ?? preferred(stateRoot: stateRoot)
        let directory = kernel.directory(stateRoot: stateRoot)
        guard FileSystem.exists(directory + "/vmlinuz") else {
            throw SandboxError(.kernelCacheBroken, "no \(kernel.rawValue) guest kernel is cached at \(directory)")
        }
        return directory
    }
}
