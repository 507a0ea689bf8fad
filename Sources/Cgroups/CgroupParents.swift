#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// The pool's parent directory (`<mount>/<name>`) in every hierarchy, held open, plus what the
/// hierarchies offer: which limit files exist, how to stop processes, and where this process
/// itself lives (so it can step out of an entry before the entry is emptied).
package final class CgroupParents: Sendable {
    let host: CgroupHost
    let name: String
    let directories: [FileDescriptor]
    package let layout: CgroupLimitLayout
    /// Index of the v1 freezer hierarchy, used to stop processes before killing them.
    let freezerIndex: Int?
    /// v2 `cgroup.kill` (Linux 5.14+) kills a whole cgroup in one write.
    let hasKillFile: Bool
    /// This process's own `cgroup.procs` per hierarchy.
    let homeProcesses: [FileDescriptor?]

    var hierarchies: [CgroupHierarchy] { host.hierarchies }

    /// cgroup2 directories cannot be renamed (EPERM): there an entry keeps its free name and
    /// a taken entry carries its taken name in this extended attribute, set with XATTR_CREATE
    /// so only one process can claim it.
    static let holderAttribute = "trusted.rund.holder"
    var marksWithAttribute: Bool { host.hierarchies.contains { $0.version == .v2 } }

    /// The directory name an entry has on disk.
    func directoryName(_ name: CgroupEntryName) -> String {
        marksWithAttribute ? CgroupEntryName.free(token: name.token).text : name.text
    }

    /// The entry's logical name as found on disk: on v2 the holder attribute, if present.
    func entryName(directory text: String, in hierarchy: Int) throws -> CgroupEntryName? {
        guard let name = CgroupEntryName(parsing: text) else { return nil }
        guard marksWithAttribute, case .free = name else { return name }
        let directory: FileDescriptor
        do {
            directory = try directories[hierarchy].openAt(text, O_RDONLY | O_DIRECTORY)
        } catch let error as SystemError where error.errno == ENOENT {
            // Listed a moment ago, gone now: another process claimed or removed it.
            return nil
        }
        guard let holder = try directory.extendedAttribute(Self.holderAttribute),
            let taken = CgroupEntryName(parsing: holder), taken.token == name.token
        else { return name }
        return taken
    }

    private init(
        host: CgroupHost, name: String, directories: [FileDescriptor], layout: CgroupLimitLayout,
        hasKillFile: Bool, homeProcesses: [FileDescriptor?]
    ) {
        self.host = host
        self.name = name
        self.directories = directories
        self.layout = layout
        self.freezerIndex = host.hierarchies.firstIndex { $0.version == .v1 && $0.has("freezer") }
        self.hasKillFile = hasKillFile
        self.homeProcesses = homeProcesses
    }

    /// Opens (and with `create`, makes and initialises) the parent in every hierarchy.
    /// Returns nil when `create` is false and the parent exists in no hierarchy; a parent that
    /// exists in some (a crash while making it) is completed.
    static func open(host: CgroupHost, name: String, create requested: Bool) throws -> CgroupParents? {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw CgroupError("invalid pool parent name \"\(name)\": use one directory name such as rund")
        }
        guard !host.hierarchies.isEmpty else { throw CgroupError(.noHierarchy, "no cgroup hierarchy to use") }
        let create = requested || host.hierarchies.contains { access("\($0.mountPoint)/\(name)", F_OK) == 0 }
        var directories: [FileDescriptor] = []
        var cpusetDefaults: [Int: (cpus: String, mems: String)] = [:]
        var available: Set<CgroupLimitLayout.Setting> = []
        for (index, hierarchy) in host.hierarchies.enumerated() {
            let root = try FileDescriptor.openDirectory(hierarchy.mountPoint)
            if !root.existsAt(name) {
                guard create else { return nil }
                if hierarchy.version == .v2 { try enableControllers(in: root, wanted: CgroupHost.wantedV2Controllers) }
                do { try root.makeDirectoryAt(name) } catch let error as SystemError where error.errno == EEXIST {}
            }
            let parent = try root.openAt(name, O_RDONLY | O_DIRECTORY)
            if create, hierarchy.version == .v2 { try enableControllers(in: parent, wanted: CgroupHost.wantedV2Controllers) }
            if hierarchy.version == .v1, hierarchy.has("cpuset") {
                cpusetDefaults[index] = try prepareCpuset(parent: parent, root: root, initialise: create)
            }
            for file in CgroupLimitLayout.candidateFiles(for: hierarchy) where parent.existsAt(file) {
                available.insert(.init(hierarchy: index, file: file))
            }
            directories.append(parent)
        }
        let layout = CgroupLimitLayout(hierarchies: host.hierarchies, available: available, cpusetDefaults: cpusetDefaults)
        let hasKillFile = host.hierarchies.first?.version == .v2 && directories[0].existsAt("cgroup.kill")
        return CgroupParents(
            host: host, name: name, directories: directories, layout: layout,
            hasKillFile: hasKillFile, homeProcesses: openHomeProcesses(host.hierarchies))
    }

    /// Moves `pid` back to this process's own cgroups (it came from there).
    package func moveHome(_ pid: pid_t) throws {
        for home in homeProcesses {
            try home?.writeValue(String(pid))
        }
    }

    /// A v1 cpuset cgroup starts with no CPUs and no tasks can join it: give the parent the
    /// root's and let children copy them at mkdir (`cgroup.clone_children`).
    private static func prepareCpuset(parent: FileDescriptor, root: FileDescriptor, initialise: Bool) throws -> (String, String) {
        func read(_ dir: FileDescriptor, _ file: String) throws -> String {
            try dir.openAt(file, O_RDONLY).readValue().trimmingWhitespace()
        }
        var cpus = try read(parent, "cpuset.cpus")
        var mems = try read(parent, "cpuset.mems")
        if initialise {
            if cpus.isEmpty {
                cpus = try read(root, "cpuset.effective_cpus")
                try parent.openAt("cpuset.cpus", O_WRONLY).writeValue(cpus)
            }
            if mems.isEmpty {
                mems = try read(root, "cpuset.effective_mems")
                try parent.openAt("cpuset.mems", O_WRONLY).writeValue(mems)
            }
            try parent.openAt("cgroup.clone_children", O_WRONLY).writeValue("1")
        }
        return (cpus, mems)
    }

    /// v2: a child only gets a controller's files if its parent lists it in subtree_control.
    private static func enableControllers(in directory: FileDescriptor, wanted: [String]) throws {
        let offered = try directory.openAt("cgroup.controllers", O_RDONLY).readValue().split(whereSeparator: \.isWhitespace)
        let enabled = try directory.openAt("cgroup.subtree_control", O_RDONLY).readValue().split(whereSeparator: \.isWhitespace)
        let control = try directory.openAt("cgroup.subtree_control", O_WRONLY)
        for controller in wanted where offered.contains(Substring(controller)) && !enabled.contains(Substring(controller)) {
            try control.writeValue("+" + controller)
        }
    }

    private static func openHomeProcesses(_ hierarchies: [CgroupHierarchy]) -> [FileDescriptor?] {
        let text = (try? FileDescriptor.open("/proc/self/cgroup", O_RDONLY).readValue()) ?? ""
        var paths: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            if parts.count == 3 { paths[parts[1].split(separator: ",").sorted().joined(separator: ",")] = String(parts[2]) }
        }
        return hierarchies.map { hierarchy in
            guard let path = paths[hierarchy.procKey] else { return nil }
            return try? FileDescriptor.open(hierarchy.directory(forCgroupPath: path) + "/cgroup.procs", O_WRONLY)
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
