#if canImport(Glibc)
import Glibc
#endif
import HostOS

extension CgroupPool {
    /// Removes a whole pool parent: kills every process in every entry and removes all entries
    /// and the parents. For tests and benchmarks that made their own parent; never point it at
    /// a parent live sandboxes use.
    public static func removeAll(host: CgroupHost, parentName: String) throws {
        guard let parents = try CgroupParents.open(host: host, name: parentName, create: false) else { return }
        var names: Set<String> = []
        for directory in parents.directories {
            for text in try directory.directoryEntries() where CgroupEntryName(parsing: text) != nil { names.insert(text) }
        }
        for text in names {
            guard let name = CgroupEntryName(parsing: text) else { continue }
            // Give the entry this name everywhere it exists under another, so one slot sees it all.
            for directory in parents.directories where !directory.existsAt(text) {
                do { try directory.makeDirectoryAt(text) } catch let error as SystemError where error.errno == EEXIST {}
            }
            let slot = try CgroupSlot.open(name, in: parents)
            try slot.drain(in: parents)
            try slot.destroy(in: parents)
        }
        for hierarchy in host.hierarchies {
            let path = "\(hierarchy.mountPoint)/\(parentName)"
            if rmdir(path) != 0 && errno != ENOENT { throw SystemError.last("rmdir", subject: path) }
        }
    }
}
