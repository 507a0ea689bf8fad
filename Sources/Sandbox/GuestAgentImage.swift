#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Storage

/// The guest's root filesystem as an EROFS image holding rund-agent as /init, for a kernel with
/// every driver built in: the VM maps it with virtio-pmem and the kernel mounts it `dax` as its
/// root (`root=/dev/pmem0`), so no initramfs is copied into guest memory at boot and every
/// sandbox runs the agent from the same host page-cache pages. Unpacking the 20 MB initramfs
/// was most of a cold boot's kernel time in the rig (docs/kernel.md).
/// Built once per agent binary and kept under `<root>/agent-images/<key>.erofs`.
public enum GuestAgentImage {
    /// The mount points the agent uses; the root is read-only, so they must exist in it.
    static let directories = ["bin", "dev", "etc", "lib", "lib/modules", "mnt", "proc", "root", "run", "sys", "tmp"]

    /// The kernel command line that boots from the image on the first pmem device.
    public static let commandLine = "root=/dev/pmem0 rootfstype=erofs rootflags=dax ro rootwait init=/init"

    /// Whether a cold-booted sandbox of this kernel boots from the agent image: the kernel must
    /// mount EROFS from virtio-pmem with DAX and load no module (there is no initramfs to
    /// carry one).
    public static func usable(kernelDirectory: String) -> Bool {
        // A kernel with module support (the stock one) is told apart by its config alone,
        // before its 4000-line modules.dep is parsed (a sandbox start asks every time).
        guard let config = try? FileDescriptor.open(kernelDirectory + "/config", O_RDONLY | O_CLOEXEC).readToEnd(limit: 1 << 20),
            String(decoding: config, as: UTF8.self).split(separator: "\n").contains("# CONFIG_MODULES is not set")
        else { return false }
        guard GuestInitramfs.pmemUnsupportedReason(kernelDirectory: kernelDirectory) == nil else { return false }
        let modules = try? GuestInitramfs.loadOrder(of: GuestInitramfs.sandboxModules(imageOn: .pmem), kernelDirectory: kernelDirectory)
        return modules?.isEmpty == true
    }

    /// Returns the cached image for this agent, building it when missing (the key is the agent
    /// file's identity, as for `GuestInitramfs`).
    public static func path(stateRoot: String, agentPath: String) throws -> String {
        guard let agent = try? FileSystem.status(at: nil, agentPath) else {
            throw SandboxError(.agentMissing, "cannot find the guest agent at \(agentPath)")
        }
        let identity = "agent-image|\(agent.st_dev):\(agent.st_ino):\(agent.st_size):\(agent.st_mtim.tv_sec).\(agent.st_mtim.tv_nsec)"
        let directory = stateRoot + "/agent-images"
        let path = directory + "/" + SHA256.hash(Array(identity.utf8)) + ".erofs"
        if FileSystem.exists(path) { return path }

        try FileSystem.makeDirectories(directory)
        // One builder at a time: sandboxes started together must map the same file, or each
        // holds its own copy of the agent's pages and nothing is shared.
        let lock = try FileSystem.open(at: nil, directory + "/.build.lock", O_RDWR | O_CREAT | O_CLOEXEC, mode: 0o600)
        defer { lock.close() }
        _ = try FileSystem.lock(lock)
        if FileSystem.exists(path) { return path }
        let staging = directory + "/.staging-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileSystem.removeTree(staging) }
        try FileSystem.makeDirectories(staging)
        for name in directories { try FileSystem.makeDirectories(staging + "/" + name) }
        let bytes: [UInt8]
        do {
            bytes = try FileDescriptor.open(agentPath, O_RDONLY | O_CLOEXEC).readToEnd(limit: 256 << 20)
        } catch {
            throw SandboxError(.agentMissing, "cannot read the guest agent at \(agentPath): \(error)")
        }
        let initFile = try FileSystem.open(at: nil, staging + "/init", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o755)
        try initFile.writeAll(bytes)
        initFile.close()
        // The console init's stdio is opened on before anything mounts devtmpfs, as in the
        // kernel's built-in initramfs (an agent that does not mount /dev still has it).
        let dev = try FileSystem.openDirectory(at: nil, staging + "/dev")
        try FileSystem.makeNode(at: dev, "console", mode: S_IFCHR | 0o600, device: FileSystem.deviceNumber(major: 5, minor: 1))
        dev.close()
        // No modules to load: ModuleLoader reads an empty list.
        let order = try FileSystem.open(at: nil, staging + "/etc/modules.order", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o644)
        order.close()

        let temporary = path + ".tmp-\(getpid())"
        defer { try? FileSystem.unlink(at: nil, temporary) }
        do {
            try EROFSBuilder.build(tree: staging, output: temporary)
        } catch {
            throw SandboxError("cannot build the guest agent's root image: \(error)")
        }
        // EROFS images are whole 4 KiB blocks, as virtio-pmem needs.
        try FileSystem.rename(at: nil, temporary, to: path)
        return path
    }
}
