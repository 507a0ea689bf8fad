/// One mounted cgroup hierarchy the pool keeps a directory in: a v1 hierarchy (one or more
/// controllers mounted together, e.g. `memory` or `cpu,cpuacct`) or the v2 unified hierarchy.
public struct CgroupHierarchy: Sendable, Equatable, Codable {
    public enum Version: String, Sendable, Codable { case v1, v2 }

    public let version: Version
    public let mountPoint: String
    /// The cgroup path the mount shows as its top (`/` unless the mount is a subtree, as in a
    /// container); paths from /proc/self/cgroup are relative to the hierarchy, not the mount.
    public let mountRoot: String
    public let controllers: [String]

    public init(version: Version, mountPoint: String, mountRoot: String = "/", controllers: [String]) {
        self.version = version
        self.mountPoint = mountPoint
        self.mountRoot = mountRoot
        self.controllers = controllers
    }

    public func has(_ controller: String) -> Bool { controllers.contains(controller) }

    /// Where a cgroup at hierarchy path `cgroupPath` (as /proc/<pid>/cgroup names it) lives.
    public func directory(forCgroupPath cgroupPath: String) -> String {
        var relative = cgroupPath
        if mountRoot != "/", relative.hasPrefix(mountRoot) { relative.removeFirst(mountRoot.count) }
        let trimmed = relative.drop(while: { $0 == "/" })
        return trimmed.isEmpty ? mountPoint : mountPoint + "/" + trimmed
    }

    /// The key /proc/<pid>/cgroup uses for this hierarchy ("" for v2, the controllers for v1),
    /// sorted so the kernel's listing order does not matter.
    var procKey: String { version == .v2 ? "" : controllers.sorted().joined(separator: ",") }
}
