#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// What this host offers for cgroups, detected at run time from /proc/self/mountinfo:
/// v1 (one hierarchy per controller group), v2 (unified), or hybrid (v1 controllers plus a
/// cgroup2 mount without them; the pool then uses the v1 hierarchies).
public struct CgroupHost: Sendable, Equatable, Codable {
    public enum Mode: String, Sendable, Codable { case v1, v2, hybrid }

    /// v1 controllers a sandbox needs; freezer stops a sandbox's processes before killing them.
    public static let wantedV1Controllers = ["cpu", "cpuacct", "cpuset", "memory", "blkio", "freezer", "pids"]
    /// v2 controllers enabled in `subtree_control` (freezing and killing are built into v2).
    public static let wantedV2Controllers = ["cpu", "cpuset", "memory", "io", "pids"]

    public let mode: Mode
    /// The hierarchies the pool keeps a directory in, in a fixed order (the first one is where
    /// an entry is claimed, see `CgroupPool`).
    public let hierarchies: [CgroupHierarchy]
    /// True when every hierarchy's top directory is writable by this process.
    public let writable: Bool
    /// Where the (controller-less, in hybrid mode) cgroup2 hierarchy is mounted, if any.
    public let unifiedMountPoint: String?

    public init(mode: Mode, hierarchies: [CgroupHierarchy], writable: Bool, unifiedMountPoint: String? = nil) {
        self.mode = mode
        self.hierarchies = hierarchies
        self.writable = writable
        self.unifiedMountPoint = unifiedMountPoint
    }

    /// The controllers available to the pool, over all its hierarchies.
    public var controllers: [String] { hierarchies.flatMap(\.controllers) }

    public static func detect() throws -> CgroupHost {
        let text: String
        do {
            text = try FileDescriptor.open("/proc/self/mountinfo", O_RDONLY).readValue(capacity: 65536)
        } catch {
            throw CgroupError("cannot read /proc/self/mountinfo (\(error)): is /proc mounted?")
        }
        let mounts = MountInfo.parse(text)
        guard let host = detect(mounts: mounts, controllersOfUnified: readUnifiedControllers, isWritable: isWritable)
        else { throw CgroupError("no cgroup filesystem is mounted: mount cgroup2 at /sys/fs/cgroup") }
        return host
    }

    /// Pure detection from parsed mounts (tests feed it other hosts' mountinfo).
    static func detect(
        mounts: [MountInfo.Entry],
        controllersOfUnified: (String) -> [String],
        isWritable: (String) -> Bool
    ) -> CgroupHost? {
        var v1: [CgroupHierarchy] = []
        var seenDevices: Set<String> = []
        for mount in mounts where mount.filesystemType == "cgroup" {
            let controllers = mount.superOptions.filter { wantedV1Controllers.contains($0) || knownOtherV1Controllers.contains($0) }
            guard controllers.contains(where: wantedV1Controllers.contains), !seenDevices.contains(mount.device) else { continue }
            seenDevices.insert(mount.device)
            v1.append(CgroupHierarchy(version: .v1, mountPoint: mount.mountPoint, mountRoot: mount.root, controllers: controllers))
        }
        let unified = mounts.first { $0.filesystemType == "cgroup2" }
        let mode: Mode
        let hierarchies: [CgroupHierarchy]
        if !v1.isEmpty {
            mode = unified == nil ? .v1 : .hybrid
            hierarchies = orderedByWanted(v1)
        } else if let unified {
            mode = .v2
            hierarchies = [
                CgroupHierarchy(
                    version: .v2, mountPoint: unified.mountPoint, mountRoot: unified.root,
                    controllers: controllersOfUnified(unified.mountPoint))
            ]
        } else {
            return nil
        }
        let writable = hierarchies.allSatisfy { isWritable($0.mountPoint) }
        return CgroupHost(mode: mode, hierarchies: hierarchies, writable: writable, unifiedMountPoint: unified?.mountPoint)
    }

    /// One line for `rund doctor`.
    public var summary: String {
        let where_ = hierarchies.map { "\($0.mountPoint) [\($0.controllers.joined(separator: ","))]" }.joined(separator: ", ")
        let missing = (mode == .v2 ? Self.wantedV2Controllers : Self.wantedV1Controllers).filter { !controllers.contains($0) }
        var line = "cgroup \(mode.rawValue): \(where_)"
        if mode == .hybrid, let unifiedMountPoint { line += "; cgroup2 at \(unifiedMountPoint) unused (controllers bound to v1)" }
        if !missing.isEmpty { line += "; missing controllers: \(missing.joined(separator: ","))" }
        line += writable ? "; writable" : "; NOT writable (run as root with cgroupfs mounted read-write)"
        return line
    }

    /// Other v1 controllers a mount may carry alongside the wanted ones (`cpu,cpuacct`).
    private static let knownOtherV1Controllers = ["devices", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc"]

    /// Wanted-controller order, so the claim hierarchy is the same for every rund process.
    private static func orderedByWanted(_ hierarchies: [CgroupHierarchy]) -> [CgroupHierarchy] {
        func rank(_ h: CgroupHierarchy) -> Int {
            h.controllers.compactMap { wantedV1Controllers.firstIndex(of: $0) }.min() ?? Int.max
        }
        return hierarchies.sorted { rank($0) < rank($1) }
    }

    private static func readUnifiedControllers(_ mountPoint: String) -> [String] {
        let text = (try? FileDescriptor.open(mountPoint + "/cgroup.controllers", O_RDONLY).readValue()) ?? ""
        return text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
    }

    private static func isWritable(_ path: String) -> Bool {
        access(path, W_OK) == 0
    }
}
