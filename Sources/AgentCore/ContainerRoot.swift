#if canImport(Glibc)
import Glibc
#endif
import HostOS
import TTRPC

/// A container created by CreateContainer: its mounted rootfs and hostname. Processes started
/// in it get new namespaces (the main process) or join the main process's (execs).
struct ContainerRoot: Sendable {
    let id: String
    let plan: RootfsPlan
    let hostname: String
    /// The container whose UTS and IPC namespaces the main process joins (a pod's).
    var sharesNamespacesWith: String? = nil
    /// Its own cgroup (a pod's containers); nil: the guest's root cgroup.
    var cgroup: ContainerCgroup? = nil

    /// Mounts the plan; on any failure unmounts what was mounted and throws.
    static func mount(id: String, plan: RootfsPlan, hostname: String) throws {
        var mounted: [String] = []
        do {
            for directory in ["", "/image", "/writable", "/rootfs"] {
                try FileSystem.makeDirectories(plan.directory + directory)
            }
            for step in [plan.imageMount, plan.writableMount] {
                try waitForDevice(step.source)
                try Mount.mount(source: step.source, target: step.target, type: step.type, flags: step.flags, data: step.data)
                mounted.append(step.target)
            }
            try FileSystem.makeDirectories(plan.upperDirectory)
            try FileSystem.makeDirectories(plan.workDirectory)
            let overlay = plan.overlayMount
            try Mount.mount(source: overlay.source, target: overlay.target, type: overlay.type, flags: overlay.flags, data: overlay.data)
        } catch {
            for target in mounted.reversed() { try? Mount.unmount(target, detach: true) }
            throw TTRPCStatus(.failedPrecondition, "cannot mount the rootfs of container \(id): \(error)")
        }
    }

    /// libnvdimm probes a pmem device asynchronously: /dev/pmem0 appears a moment after its
    /// module loaded (virtio-blk's disks are there at once). A pod's later container gets drives
    /// that were empty until the host filled them: their size shows once the driver has handled
    /// the change. Waits for `path` to exist and hold something, up to `limit`.
    static func waitForDevice(_ path: String, limit: Duration = .seconds(10)) throws {
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        while access(path, F_OK) != 0 || isEmptyBlockDevice(path) {
            guard clock.now < deadline else {
                throw TTRPCStatus(.failedPrecondition, "device \(path) did not appear (or stayed empty) within \(limit)")
            }
            usleep(10_000)
        }
    }

    /// A block device whose size in /sys is 0 (a drive with no medium yet).
    static func isEmptyBlockDevice(_ path: String) -> Bool {
        guard let name = path.split(separator: "/").last,
            let text = GuestStats.readText("/sys/class/block/\(name)/size")
        else { return false }
        return text.split(whereSeparator: \.isWhitespace).first == "0"
    }

    /// Unmounts the overlay, the writable fs and the image (lazily: processes may still hold them).
    func unmount() {
        for target in [plan.overlayMount.target, plan.writableMount.target, plan.imageMount.target] {
            try? Mount.unmount(target, detach: true)
        }
    }

    /// Whether `path` (inside the container) names something exec could run. Symlinks count:
    /// their targets resolve inside the container only at exec time.
    func isExecutable(_ path: String) -> Bool {
        var info = stat()
        guard lstat(plan.rootfs + path, &info) == 0 else { return false }
        let type = info.st_mode & S_IFMT
        return type == S_IFLNK || (type == S_IFREG && info.st_mode & 0o111 != 0)
    }
}

/// Where ProcessTable starts a process.
enum SpawnPlace: Sendable {
    case guestRoot
    /// A container's main process: new namespaces (UTS and IPC those of `sharingWith`, a pid,
    /// when given), chrooted into its rootfs.
    case newContainer(ContainerRoot, sharingWith: pid_t?)
    /// An exec: joins the namespaces of `mainPID` and chroots into the same rootfs.
    case joining(ContainerRoot, mainPID: pid_t)
}
