#if canImport(Glibc)
import Glibc
#endif
import HostOS

extension CgroupPool {
    /// Removes a whole pool parent: kills every process in every entry and removes all entries
    /// and the parents. For tests and benchmarks that made their own parent; never point it at
    /// a parent live sandboxes use.
    public static func removeAll(host: CgroupHost, parentName: String) throws {
        // A few passes: an entry made or renamed while we list is caught by the next one.
        var lastError: Error?
        for _ in 0..<5 {
            guard let parents = try CgroupParents.open(host: host, name: parentName, create: false) else { return }
            lastError = nil
            do {
                try removeEntries(parents)
            } catch {
                lastError = error
            }
            var remaining = false
            for hierarchy in host.hierarchies {
                let path = "\(hierarchy.mountPoint)/\(parentName)"
                if rmdir(path) != 0 && errno != ENOENT {
                    remaining = true
                    lastError = lastError ?? SystemError.last("rmdir", subject: path)
                }
            }
            if !remaining { return }
            usleep(20_000)
        }
        if let lastError { throw lastError }
    }

    private static func removeEntries(_ parents: CgroupParents) throws {
        var names: Set<String> = []
        for directory in parents.directories {
            for text in try directory.directoryEntries() where CgroupEntryName(parsing: text) != nil { names.insert(text) }
        }
        var firstError: Error?
        for text in names {
            guard let name = CgroupEntryName(parsing: text) else { continue }
            do {
                // Give the entry this name everywhere it is missing, so one slot sees it all.
                for directory in parents.directories where !directory.existsAt(text) {
                    do { try directory.makeDirectoryAt(text) } catch let error as SystemError where error.errno == EEXIST {}
                }
                let slot = try CgroupSlot.open(name, in: parents)
                try slot.drain(in: parents)
                try slot.destroy(in: parents)
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
    }
}
