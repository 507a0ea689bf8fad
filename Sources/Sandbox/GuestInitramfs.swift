#if canImport(Glibc)
import Glibc
#endif
import Boot
import HostOS
import Storage

/// The guest's initramfs: rund-agent as /init plus the kernel modules it needs (with their
/// dependencies, in load order, listed in /etc/modules.order), taken from the cached kernel.
/// Built once per content and kept under `<root>/initramfs/<sha256>.cpio`.
public enum GuestInitramfs {
    /// What the agent needs from the kernel: the MMIO transport, disks, vsock, the rootfs layers,
    /// the network interface (virtio_net brings net_failover and failover through modules.dep).
    public static let requiredModules = ["virtio_mmio", "virtio_blk", "vmw_vsock_virtio_transport", "overlay", "erofs", "virtio_net"]
    /// What the image on virtio-pmem adds: the device's driver and the pmem block driver (which
    /// gives /dev/pmem0 its DAX device); the kernel must also have FS_DAX built in.
    public static let pmemModules = ["virtio_pmem", "nd_pmem"]

    /// The balloon: free page reporting gives the host back what the guest frees.
    public static let balloonModules = ["virtio_balloon"]

    /// The modules of a cold-booted sandbox whose image is on `device`.
    public static func sandboxModules(imageOn device: RootfsDevice) -> [String] {
        requiredModules + balloonModules + (device == .pmem ? pmemModules : [])
    }

    /// The modules of a template's guest, and so of its clones: their image is on virtio-blk.
    public static let templateModules = requiredModules + balloonModules

    /// Why the cached kernel cannot mount an image from virtio-pmem with DAX, or nil when it can.
    public static func pmemUnsupportedReason(kernelDirectory: String) -> String? {
        if let config = try? read(kernelDirectory + "/config", what: "kernel config"),
            !String(decoding: config, as: UTF8.self).split(separator: "\n").contains("CONFIG_FS_DAX=y")
        {
            return "the guest kernel is built without CONFIG_FS_DAX"
        }
        do {
            _ = try loadOrder(of: pmemModules, kernelDirectory: kernelDirectory)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Returns the cached archive for this agent and kernel, building it when missing.
    /// Sandbox start calls this every time, so a cache hit costs two stats and no reading: the
    /// key is the identity of the inputs (the agent file's device, inode, size and mtime, the
    /// kernel version, the module list), not a hash of the 20 MB archive.
    public static func path(
        stateRoot: String, kernelDirectory: String, agentPath: String,
        modules: [String] = requiredModules
    ) throws -> String {
        let directory = stateRoot + "/initramfs"
        let path = directory + "/" + (try cacheKey(kernelDirectory: kernelDirectory, agentPath: agentPath, modules: modules)) + ".cpio"
        if FileSystem.exists(path) { return path }

        let agent = try read(agentPath, what: "guest agent", kind: .agentMissing)
        let order = try loadOrder(of: modules, kernelDirectory: kernelDirectory)

        var archive = NewcArchive()
        for directory in ["bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "root", "run", "sys", "tmp"] {
            archive.addDirectory(directory)
        }
        archive.addFile("init", data: agent, executable: true)
        var created: Set<String> = []
        for module in order {
            var parent = "lib/modules"
            for component in module.split(separator: "/").dropLast() {
                parent += "/" + component
                if created.insert(parent).inserted { archive.addDirectory(parent) }
            }
            archive.addFile("lib/modules/" + module, data: try read(kernelDirectory + "/modules/" + module, what: "kernel module"))
        }
        archive.addFile("etc/modules.order", data: Array(order.map { $0 + "\n" }.joined().utf8))
        archive.finish()

        try FileSystem.makeDirectories(directory)
        let temporary = path + ".tmp-\(getpid())"
        defer { try? FileSystem.unlink(at: nil, temporary) }
        let file = try FileSystem.open(at: nil, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o644)
        try file.writeAll(archive.bytes)
        try file.fsync()
        try FileSystem.rename(at: nil, temporary, to: path)
        return path
    }

    static func cacheKey(kernelDirectory: String, agentPath: String, modules: [String]) throws -> String {
        guard let agent = try? FileSystem.status(at: nil, agentPath) else {
            throw SandboxError(.agentMissing, "cannot find the guest agent at \(agentPath)")
        }
        let version =
            (try? read(kernelDirectory + "/version", what: "kernel version")).map { String(decoding: $0, as: UTF8.self) }
            ?? kernelDirectory
        let identity =
            "\(agent.st_dev):\(agent.st_ino):\(agent.st_size):\(agent.st_mtim.tv_sec).\(agent.st_mtim.tv_nsec)"
            + "|\(version)|\(modules.joined(separator: ","))"
        return SHA256.hash(Array(identity.utf8))
    }

    /// The modules to carry, in load order (dependencies first), from the cached kernel.
    static func loadOrder(of names: [String], kernelDirectory: String) throws -> [String] {
        let modules = kernelDirectory + "/modules/"
        let dependencies = try read(modules + "modules.dep", what: "kernel module list")
        let builtin = try? read(modules + "modules.builtin", what: "kernel built-in module list")
        do {
            return try KernelModules(
                dependencies: String(decoding: dependencies, as: UTF8.self),
                builtin: builtin.map { String(decoding: $0, as: UTF8.self) }
            ).loadOrder(of: names)
        } catch {
            throw SandboxError(.kernelCacheBroken, "\(error) in the cached kernel's modules.dep")
        }
    }

    private static func read(_ path: String, what: String, kind: SandboxError.Kind = .kernelCacheBroken) throws -> [UInt8] {
        do {
            return try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC).readToEnd(limit: 256 << 20)
        } catch {
            throw SandboxError(kind, "cannot read the \(what) at \(path): \(error)")
        }
    }
}
