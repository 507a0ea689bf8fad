#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// One pool entry: a directory per hierarchy, all with the same name. Directory and file
/// descriptors stay open across renames (kernfs keeps them bound to the node), so the hot path
/// never walks a path. Owned by exactly one party at a time (the pool's free list under its
/// lock, or one lease under the lease's lock), hence unchecked Sendable.
package final class CgroupSlot: @unchecked Sendable {
    package typealias Setting = CgroupLimitLayout.Setting

    let token: String
    private(set) var name: CgroupEntryName
    private let directories: [FileDescriptor]
    private var openFiles: [Setting: FileDescriptor] = [:]
    /// What we last wrote to each limit file; nil entries are unknown (write them anyway).
    private var known: [Setting: String] = [:]

    private init(name: CgroupEntryName, directories: [FileDescriptor]) {
        self.token = name.token
        self.name = name
        self.directories = directories
    }

    /// Makes a new entry in every hierarchy. The claim hierarchy (index 0) is made last, so
    /// nobody can claim the entry before it exists everywhere. A fresh entry has the defaults
    /// (cpuset copied from the parent), so they are known without a write.
    package static func create(_ name: CgroupEntryName, in parents: CgroupParents, defaults: [(Setting, String)]) throws -> CgroupSlot {
        var made: [Int] = []
        let directoryName = parents.directoryName(name)
        do {
            for index in parents.directories.indices.reversed() {
                do {
                    try parents.directories[index].makeDirectoryAt(directoryName)
                } catch let error as SystemError where error.errno == EEXIST {
                    // `rund gc` may have completed this half-made entry for us: it is ours.
                }
                made.append(index)
            }
            // On v2 the directory is made free and then marked (claimed) like a pooled one.
            let slot: CgroupSlot
            do {
                slot = try open(parents.marksWithAttribute ? .free(token: name.token) : name, in: parents)
            } catch let error as SystemError where error.errno == ENOENT && parents.marksWithAttribute {
                // Between mkdir and open another process claimed it, used it and removed it.
                made = []
                throw CgroupSlotRace.claimedByAnother
            }
            if parents.marksWithAttribute, case .taken = name {
                do {
                    try slot.rename(to: name, in: parents)
                } catch let error as SystemError where error.errno == EEXIST || error.errno == ENOENT {
                    // Between mkdir and the mark it looked free, and another process claimed it:
                    // it is that process's now, so it stays.
                    slot.closeDescriptors()
                    made = []
                    throw CgroupSlotRace.claimedByAnother
                }
            }
            for (setting, value) in defaults { slot.known[setting] = value }
            return slot
        } catch {
            for index in made { try? parents.directories[index].removeDirectoryAt(directoryName) }
            throw error
        }
    }

    /// Opens an existing entry (found by a scan); its limit values are unknown.
    static func open(_ name: CgroupEntryName, in parents: CgroupParents) throws -> CgroupSlot {
        let directories = try parents.directories.map { try $0.openAt(parents.directoryName(name), O_RDONLY | O_DIRECTORY) }
        return CgroupSlot(name: name, directories: directories)
    }

    /// Full paths of the entry, one per hierarchy.
    func paths(in parents: CgroupParents) -> [String] {
        parents.hierarchies.map { "\($0.mountPoint)/\(parents.name)/\(parents.directoryName(name))" }
    }

    /// Renames the entry in every hierarchy. Claiming (free -> taken) renames the claim
    /// hierarchy first: if another process claimed it, that rename fails with ENOENT and nothing
    /// changed. Returning (taken -> free) renames it last, so the entry is claimable only when
    /// complete. A failure part-way undoes what was done.
    func rename(to newName: CgroupEntryName, in parents: CgroupParents) throws {
        if parents.marksWithAttribute {
            try mark(newName)
            return
        }
        let claiming = { if case .taken = newName { return true } else { return false } }()
        let order = claiming ? Array(parents.directories.indices) : Array(parents.directories.indices.reversed())
        var done: [Int] = []
        do {
            for index in order {
                try parents.directories[index].renameAt(name.text, to: newName.text)
                done.append(index)
            }
        } catch {
            for index in done.reversed() { try? parents.directories[index].renameAt(newName.text, to: name.text) }
            throw error
        }
        name = newName
    }

    /// True while the entry on disk still carries this slot's name. False when `rund gc`
    /// returned it after its owner died (and someone may have taken it since: its held
    /// descriptors follow the directory, so nothing may be done through them any more).
    func stillNamed(in parents: CgroupParents) -> Bool {
        if parents.marksWithAttribute {
            return (try? directories[0].extendedAttribute(CgroupParents.holderAttribute)) == name.text
        }
        return parents.directories[0].existsAt(name.text)
    }

    /// cgroup v2: set (claim, atomic through XATTR_CREATE; EEXIST if someone else holds it) or
    /// remove the holder attribute of the single directory.
    private func mark(_ newName: CgroupEntryName) throws {
        switch newName {
        case .taken:
            try directories[0].setExtendedAttribute(CgroupParents.holderAttribute, newName.text, createOnly: true)
        case .free:
            try directories[0].removeExtendedAttribute(CgroupParents.holderAttribute)
        }
        name = newName
    }

    /// Writes each value that differs from what the file is known to hold. A write refused
    /// with EINVAL (v1 memory must stay <= memory+swap) is retried after the others.
    /// Returns the number of writes made.
    @discardableResult
    package func apply(_ values: [(Setting, String)]) throws -> Int {
        var writes = 0
        var deferred: [(Setting, String)] = []
        for (setting, value) in values where known[setting] != value {
            do {
                try write(setting, value)
                writes += 1
            } catch let error as SystemError where error.errno == EINVAL {
                deferred.append((setting, value))
            }
        }
        for (setting, value) in deferred {
            try write(setting, value)
            writes += 1
        }
        return writes
    }

    /// Forgets what the limit files hold (after a failed write, or when another process may
    /// have changed them), so the next `apply` writes everything.
    func forgetLimits() { known.removeAll() }

    /// Moves a process into the entry in every hierarchy.
    package func attach(_ pid: pid_t) throws {
        for index in directories.indices {
            try file(index, "cgroup.procs", O_WRONLY).writeValue(String(pid))
        }
    }

    /// Moves one thread (v1 `tasks`), for measuring work done by the caller's own thread.
    func attachThread(_ tid: pid_t) throws {
        for index in directories.indices {
            try file(index, "tasks", O_WRONLY).writeValue(String(tid))
        }
    }

    /// The processes in the entry, over all hierarchies. A held `cgroup.procs` descriptor
    /// re-read from offset 0 still lists processes that exited but are not yet reaped, while a
    /// fresh open does not: the held one answers "empty" fast, a non-empty answer is checked
    /// through fresh opens.
    func processes() throws -> Set<pid_t> {
        let listed = try processes { try file($0, "cgroup.procs", O_RDONLY) }
        if listed.isEmpty { return listed }
        return try processes { try directories[$0].openAt("cgroup.procs", O_RDONLY) }
    }

    private func processes(reading procs: (Int) throws -> FileDescriptor) throws -> Set<pid_t> {
        var pids: Set<pid_t> = []
        for index in directories.indices {
            for line in try procs(index).readValue().split(separator: "\n") {
                if let pid = pid_t(line) { pids.insert(pid) }
            }
        }
        return pids
    }

    /// A control file of the entry (`freezer.state`, `cgroup.kill`, ...), opened once.
    func file(_ hierarchy: Int, _ name: String, _ flags: Int32) throws -> FileDescriptor {
        let key = Setting(hierarchy: hierarchy, file: flags == O_RDONLY ? name : name + ">")
        if let open = openFiles[key] { return open }
        let opened = try directories[hierarchy].openAt(name, flags)
        openFiles[key] = opened
        return opened
    }

    /// Removes the (empty) entry everywhere; the claim hierarchy first, so no one claims a
    /// half-removed entry.
    package func destroy(in parents: CgroupParents) throws {
        closeDescriptors()
        var firstError: Error?
        for index in parents.directories.indices {
            do {
                try parents.directories[index].removeDirectoryAt(parents.directoryName(name))
            } catch let error as SystemError where error.errno == ENOENT {
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }

    func closeDescriptors() {
        for fd in openFiles.values { fd.close() }
        openFiles.removeAll()
        for fd in directories { fd.close() }
    }

    private func write(_ setting: Setting, _ value: String) throws {
        do {
            try file(setting.hierarchy, setting.file, O_WRONLY).writeValue(value)
            known[setting] = value
        } catch {
            known[setting] = nil
            throw error
        }
    }
}

/// A new entry was claimed by another process before this one could mark it: make another.
enum CgroupSlotRace: Error {
    case claimedByAnother
}
