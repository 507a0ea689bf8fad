#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Logging

/// What `rund gc` did to the cgroup pool.
public struct CgroupGarbageReport: Sendable, Codable, Equatable {
    /// Sandbox IDs whose entries went back to the pool (owner process gone).
    public var returned: [String] = []
    /// Sandbox IDs left alone because their owner is alive.
    public var inUse: [String] = []
    /// Free entries a crash left half-made (missing in some hierarchy), now completed.
    public var completed: [String] = []
    /// Processes killed inside returned entries (a dead owner's leftovers).
    public var killedProcesses = 0
    /// Free entries after the collection.
    public var free = 0
    public var failures: [String] = []

    public init() {}
}

/// Works out the pool's state from directory names alone and repairs what crashes left:
/// an entry taken by a process that no longer exists (same pid and start time) is emptied,
/// reset and renamed back to free; a half-renamed or half-made entry is finished. Entries
/// whose owner is alive are never touched, even when empty: the owner may be between take and
/// attach.
public enum CgroupGarbageCollector {
    /// Collects under `<mount>/<parentName>` in every hierarchy; `dryRun` only reports. With
    /// `sandboxID`, only that sandbox's entry is looked at (the containerd shim's `delete`).
    public static func collect(
        host: CgroupHost, parentName: String = "rund", sandboxID: String? = nil, dryRun: Bool = false,
        logger: Logger = Logger(label: "rund.cgroups")
    ) throws -> CgroupGarbageReport {
        guard let parents = try CgroupParents.open(host: host, name: parentName, create: false) else {
            return CgroupGarbageReport()
        }
        return try collect(parents, sandboxID: sandboxID, dryRun: dryRun, logger: logger)
    }

    static func collect(
        _ parents: CgroupParents, sandboxID: String? = nil, dryRun: Bool = false, logger: Logger
    ) throws -> CgroupGarbageReport {
        var report = CgroupGarbageReport()
        let defaults = try parents.layout.values(for: CgroupLimits())
        for (token, names) in try scan(parents) {
            let taken = names.compactMap { name -> (ProcessIdentity, String)? in
                if case .taken(_, let owner, let id)? = name { return (owner, id) }
                return nil
            }
            if let sandboxID, taken.first?.1 != sandboxID { continue }
            if let (owner, id) = taken.first {
                if owner.isAlive {
                    report.inUse.append(id)
                    continue
                }
                report.returned.append(id)
                if dryRun { continue }
                do {
                    let takenName = CgroupEntryName.taken(token: token, owner: owner, sandboxID: id)
                    try unify(names, as: takenName, in: parents)
                    let slot = try CgroupSlot.open(takenName, in: parents)
                    defer { slot.closeDescriptors() }
                    report.killedProcesses += try slot.drain(in: parents)
                    try slot.apply(defaults)
                    try slot.rename(to: .free(token: token), in: parents)
                    report.free += 1
                    logger.info("returned cgroup of dead sandbox", metadata: ["sandbox": "\(id)", "owner": "\(owner.pid)"])
                } catch {
                    report.failures.append("sandbox \(id): \(error)")
                }
            } else if names.contains(nil) {
                report.completed.append(token)
                if dryRun { continue }
                do {
                    try unify(names, as: .free(token: token), in: parents)
                    report.free += 1
                } catch {
                    report.failures.append("entry \(token): \(error)")
                }
            } else {
                report.free += 1
            }
        }
        return report
    }

    /// Per entry token, its name in each hierarchy (nil where it is missing).
    private static func scan(_ parents: CgroupParents) throws -> [(String, [CgroupEntryName?])] {
        var byToken: [String: [CgroupEntryName?]] = [:]
        var order: [String] = []
        let count = parents.directories.count
        for (index, directory) in parents.directories.enumerated() {
            for text in try directory.directoryEntries() {
                guard let name = try parents.entryName(directory: text, in: index) else { continue }
                if byToken[name.token] == nil {
                    byToken[name.token] = Array(repeating: nil, count: count)
                    order.append(name.token)
                }
                byToken[name.token]![index] = name
            }
        }
        return order.map { ($0, byToken[$0]!) }
    }

    /// Gives the entry `target`'s name in every hierarchy: renames the others, makes missing
    /// ones; the claim hierarchy last, so the entry is never claimable half-done.
    private static func unify(_ names: [CgroupEntryName?], as target: CgroupEntryName, in parents: CgroupParents) throws {
        // cgroup v2 has one hierarchy and marks instead of renaming: nothing can be half-done.
        if parents.marksWithAttribute { return }
        for index in names.indices.reversed() {
            let directory = parents.directories[index]
            switch names[index] {
            case let name? where name == target:
                continue
            case let name?:
                try directory.renameAt(name.text, to: target.text)
            case nil:
                do { try directory.makeDirectoryAt(target.text) } catch let error as SystemError where error.errno == EEXIST {}
            }
        }
    }
}
