#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Cgroups
import HostOS
import Synchronization
import Testing

@Suite("cgroup pool on the real cgroupfs", .serialized, .enabled(if: CgroupTestHost.usable, "\(CgroupTestHost.reason)"))
struct CgroupPoolTests {
    var host: CgroupHost { CgroupTestHost.host }

    /// The limit files the pool manages (v1 names; v2 hosts use their own).
    func limitFiles(of hierarchy: CgroupHierarchy, parent: String) -> [String] {
        let v1: [String: [String]] = [
            "memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
            "cpu": ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"],
            "cpuset": ["cpuset.cpus", "cpuset.mems"],
            "pids": ["pids.max"],
        ]
        if hierarchy.version == .v2 { return ["memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "pids.max"] }
        return hierarchy.controllers.flatMap { v1[$0] ?? [] }.filter { access("\(hierarchy.mountPoint)/\(parent)/\($0)", F_OK) == 0 }
    }

    /// Every limit file and cgroup.procs of every directory under the parent, by path.
    func snapshot(_ parent: String) throws -> [String: String] {
        var result: [String: String] = [:]
        for hierarchy in host.hierarchies {
            for entry in try CgroupTestHost.entries(of: parent, in: hierarchy) {
                let directory = "\(hierarchy.mountPoint)/\(parent)/\(entry)"
                for file in limitFiles(of: hierarchy, parent: parent) + ["cgroup.procs"] {
                    result["\(hierarchy.mountPoint)|\(entry)|\(file)"] = try CgroupTestHost.read("\(directory)/\(file)")
                }
            }
        }
        return result
    }

    @Test func takeAndReleaseChangeExactlyTheExpectedFiles() throws {
        try CgroupTestHost.withParent { parent in
            let pool = try CgroupPool(
                host: host, configuration: .init(parentName: parent, minimumFree: 1, maximumFree: 1, refillInBackground: false))
            defer { try? pool.shutdown() }
            let freeName = try #require(try CgroupTestHost.entries(of: parent, in: host.hierarchies[0]).first)
            let before = try snapshot(parent)

            let limits = CgroupLimits(memoryBytes: 64 << 20, cpuQuotaMicros: 50_000, cpuShares: 512, maxProcesses: 32)
            let lease = try pool.take(sandboxID: "sandbox-a", limits: limits)
            let child = try CgroupTestHost.sleeper()
            defer { child.kill(); _ = try? child.wait() }
            try lease.attach(pid: child.pid)

            let takenName = try #require(lease.name)
            #expect(takenName.hasPrefix("sb-\(freeName.dropFirst(5))-\(getpid())-") && takenName.hasSuffix("-sandbox-a"))
            for hierarchy in host.hierarchies {
                #expect(try CgroupTestHost.entries(of: parent, in: hierarchy) == [takenName])
            }
            let during = try snapshot(parent)
            var changed: [String: String] = [:]
            for (key, value) in during {
                let parts = key.split(separator: "|").map(String.init)
                let beforeKey = [parts[0], parts[1] == takenName ? freeName : parts[1], parts[2]].joined(separator: "|")
                if before[beforeKey] != value { changed[key.split(separator: "|").dropFirst(2).joined()] = value }
            }
            var expected: [String: String] = ["cgroup.procs": "\(child.pid)"]
            if host.hierarchies[0].version == .v1 {
                expected["memory.limit_in_bytes"] = "\(64 << 20)"
                if during.keys.contains(where: { $0.hasSuffix("memsw.limit_in_bytes") }) {
                    expected["memory.memsw.limit_in_bytes"] = "\(64 << 20)"
                }
                if host.controllers.contains("cpu") { expected["cpu.cfs_quota_us"] = "50000"; expected["cpu.shares"] = "512" }
                if host.controllers.contains("pids") { expected["pids.max"] = "32" }
            }
            #expect(changed == expected)

            try lease.release()
            #expect(try child.wait() == 128 + SIGKILL)
            #expect(try snapshot(parent) == before)
            #expect(pool.freeCount == 1)
            #expect(throws: CgroupError.self) { try lease.attach(pid: getpid()) }
            try lease.release()  // a second release does nothing
        }
    }

    @Test func badInputChangesNothing() throws {
        try CgroupTestHost.withParent { parent in
            let pool = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 2, refillInBackground: false))
            defer { try? pool.shutdown() }
            let before = try snapshot(parent)
            #expect(throws: CgroupError.self) { try pool.take(sandboxID: "../../etc") }
            #expect(throws: CgroupError.self) { try pool.take(sandboxID: "ok", limits: CgroupLimits(memoryBytes: 1)) }
            if host.controllers.contains("cpuset") {
                let refused = try #require(throws: CgroupError.self) {
                    try pool.take(sandboxID: "ok", limits: CgroupLimits(cpus: "0-4000"))
                }
                #expect(refused.message.contains("refused") && !refused.message.contains("\n"))
            }
            let lease = try pool.take(sandboxID: "twice")
            #expect(throws: CgroupError.self) { try pool.take(sandboxID: "twice") }
            try lease.release()
            #expect(try snapshot(parent) == before)
        }
    }

    @Test func fiftyThreadsNeverShareAnEntryAndNothingLeaks() throws {
        try CgroupTestHost.withParent { parent in
            let size = 50
            let pool = try CgroupPool(
                host: host, configuration: .init(parentName: parent, minimumFree: size, maximumFree: size, refillInBackground: false))
            defer { try? pool.shutdown() }
            let held = Mutex<Set<String>>([])
            let violations = Atomic<Int>(0)
            let failures = Mutex<[String]>([])
            let perThread = 2000 / size
            try ThreadGroup.run(count: size) { thread in
                for round in 0..<perThread {
                    do {
                        let lease = try pool.take(
                            sandboxID: "t\(thread)-\(round)", limits: CgroupLimits(memoryBytes: Int64(64 + thread) << 20))
                        let name = String(lease.name!.prefix(15))  // "sb-" + token: the entry itself
                        if !held.withLock({ $0.insert(name).inserted }) { violations.add(1, ordering: .relaxed) }
                        held.withLock { _ = $0.remove(name) }
                        try lease.release()
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
            }
            #expect(failures.withLock { $0 } == [])
            #expect(violations.load(ordering: .relaxed) == 0)
            #expect(pool.freeCount == size)
            #expect(pool.statistics.createdOnDemand == 0)
            #expect(pool.statistics.taken == 2000 && pool.statistics.released == 2000)
            for hierarchy in host.hierarchies {
                let names = try CgroupTestHost.entries(of: parent, in: hierarchy)
                #expect(names.count == size && names.allSatisfy { $0.hasPrefix("pool-") })
            }
            #expect(
                try snapshot(parent).filter { $0.key.hasSuffix("memory.limit_in_bytes") }.allSatisfy {
                    $0.value == "9223372036854771712" || $0.value == "max"
                })
        }
    }

    @Test func gcReturnsTheEntryOfAKilledHolderAndLeavesALiveOneAlone() throws {
        try CgroupTestHost.withParent { parent in
            let pool = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 2, refillInBackground: false))
            defer { try? pool.shutdown() }
            let dead = try CgroupTestHost.sleeper()
            let live = try CgroupTestHost.sleeper()
            defer { live.kill(); _ = try? live.wait() }
            let deadOwner: ProcessIdentity = try #require(ProcessIdentity.of(pid: dead.pid))
            let liveOwner: ProcessIdentity = try #require(ProcessIdentity.of(pid: live.pid))
            let deadLease = try pool.take(sandboxID: "crashed", limits: CgroupLimits(memoryBytes: 128 << 20), owner: deadOwner)
            let liveLease = try pool.take(sandboxID: "running", owner: liveOwner)
            try deadLease.attach(pid: dead.pid)
            try liveLease.attach(pid: live.pid)
            // A process the crashed sandbox left behind: gc must kill it.
            let straggler = try CgroupTestHost.sleeper()
            defer { straggler.kill(); _ = try? straggler.wait() }
            try deadLease.attach(pid: straggler.pid)
            let liveName = try #require(liveLease.name)
            let deadToken = try #require(deadLease.name).dropFirst(3).prefix(12)

            dead.kill(SIGKILL)
            #expect(try dead.wait() == 128 + SIGKILL)
            // A separate collector, as `rund gc` runs in another process.
            let report = try CgroupGarbageCollector.collect(host: host, parentName: parent)
            #expect(report.returned == ["crashed"])
            #expect(report.inUse == ["running"])
            #expect(report.failures == [])
            #expect(report.killedProcesses == 1)
            #expect(try straggler.wait() == 128 + SIGKILL)
            for hierarchy in host.hierarchies {
                #expect(try CgroupTestHost.entries(of: parent, in: hierarchy) == ["pool-\(deadToken)", liveName].sorted())
                #expect(try CgroupTestHost.read("\(hierarchy.mountPoint)/\(parent)/\(liveName)/cgroup.procs") == "\(live.pid)")
            }
            if host.controllers.contains("memory"), host.hierarchies[0].version == .v1 {
                let memory = host.hierarchies.first { $0.has("memory") }!
                #expect(
                    try CgroupTestHost.read("\(memory.mountPoint)/\(parent)/pool-\(deadToken)/memory.limit_in_bytes")
                        == "9223372036854771712")
            }
            #expect(kill(live.pid, 0) == 0)
            let again = try pool.collectGarbage()
            #expect(again.returned == [] && again.inUse == ["running"])
            // The pool now lists the returned entry and hands it out again; the stale lease's
            // release must not touch it.
            let next = try pool.take(sandboxID: "next")
            #expect(try #require(next.name).hasPrefix("sb-\(deadToken)-"))
            #expect(pool.statistics.createdOnDemand == 0)
            let nextChild = try CgroupTestHost.sleeper()
            defer { nextChild.kill(); _ = try? nextChild.wait() }
            try next.attach(pid: nextChild.pid)
            try deadLease.release()
            #expect(try next.processes() == [nextChild.pid])
            try next.release()
            try liveLease.release()
        }
    }

    @Test func aProcessOverItsMemoryLimitIsOOMKilled() throws {
        try CgroupTestHost.withParent { parent in
            let pool = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 1, refillInBackground: false))
            defer { try? pool.shutdown() }
            let lease = try pool.take(sandboxID: "greedy", limits: CgroupLimits(memoryBytes: 64 << 20))
            let gate = try Pipe.make()
            // Waits for a line (sent once it is inside the cgroup), then dd fills one 256 MiB
            // buffer from /dev/zero: every page is touched.
            let child = try SpawnedProcess.spawn(
                ["sh", "-c", "read go && exec dd if=/dev/zero of=/dev/null bs=256M count=1 status=none"],
                standardInput: gate.read)
            gate.read.close()
            try lease.attach(pid: child.pid)
            try gate.write.writeAll("go\n")
            gate.write.close()
            #expect(try child.wait() == 128 + SIGKILL)
            let memory = try #require(host.hierarchies.first { $0.has("memory") || $0.version == .v2 })
            let directory = "\(memory.mountPoint)/\(parent)/\(try #require(lease.name))"
            let events = try CgroupTestHost.read(directory + (memory.version == .v2 ? "/memory.events" : "/memory.oom_control"))
            let kills = events.split(separator: "\n").first { $0.hasPrefix("oom_kill ") }.flatMap { Int($0.split(separator: " ")[1]) }
            #expect((kills ?? 0) >= 1)
            try lease.release()
        }
    }

    @Test func poolStartUpAdoptsFreeEntriesAndRefillsInTheBackground() throws {
        try CgroupTestHost.withParent { parent in
            do {
                let first = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 3, refillInBackground: false))
                try first.shutdown()
            }
            let pool = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 3, maximumFree: 4))
            defer { try? pool.shutdown() }
            #expect(pool.freeCount == 3)
            #expect(pool.statistics.createdInBackground == 0)
            let leases = try (0..<3).map { try pool.take(sandboxID: "s\($0)") }
            #expect(pool.statistics.createdOnDemand == 0)
            var waited = 0
            while pool.freeCount < 3 && waited < 3000 { usleep(10_000); waited += 1 }
            #expect(pool.freeCount == 3)
            #expect(pool.statistics.createdInBackground == 3)
            for lease in leases { try lease.release() }
            #expect(pool.freeCount == 4)
            #expect(pool.statistics.removed == 2)
        }
    }
}

extension CgroupPoolTests {
    /// A crash can stop a claim after some hierarchies were renamed, or a creation after some
    /// were made: gc finishes both from the names alone.
    @Test func gcFinishesHalfRenamedAndHalfMadeEntries() throws {
        try CgroupTestHost.withParent { parent in
            let pool = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 1, refillInBackground: false))
            try pool.shutdown()
            let hierarchies = host.hierarchies
            let free = try #require(try CgroupTestHost.entries(of: parent, in: hierarchies[0]).first)
            let token = String(free.dropFirst(5))
            let exited = try SpawnedProcess.spawn(["true"])
            try exited.wait()
            let taken = "sb-\(token)-\(exited.pid)-1-crashed"
            let renamed = max(1, hierarchies.count / 2)
            for hierarchy in hierarchies.prefix(renamed) {
                #expect(rename("\(hierarchy.mountPoint)/\(parent)/\(free)", "\(hierarchy.mountPoint)/\(parent)/\(taken)") == 0)
            }
            let halfMade = "pool-00000000abcd"
            for hierarchy in hierarchies.suffix(max(1, hierarchies.count - 1)) where hierarchies.count > 1 {
                #expect(mkdir("\(hierarchy.mountPoint)/\(parent)/\(halfMade)", 0o755) == 0)
            }
            let report = try CgroupGarbageCollector.collect(host: host, parentName: parent)
            #expect(report.returned == ["crashed"])
            #expect(report.completed == (hierarchies.count > 1 ? ["00000000abcd"] : []))
            #expect(report.failures == [])
            for hierarchy in hierarchies {
                let expected = hierarchies.count > 1 ? [halfMade, free].sorted() : [free]
                #expect(try CgroupTestHost.entries(of: parent, in: hierarchy) == expected)
            }
            let reopened = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 0, refillInBackground: false))
            defer { try? reopened.shutdown() }
            #expect(reopened.freeCount == (hierarchies.count > 1 ? 2 : 1))
        }
    }

    /// The shim attaches itself: release must move the caller out, not kill it. Only this
    /// thread joins (v1 `tasks`), so children other tests spawn meanwhile from other threads
    /// stay where they are; cgroup.procs still lists this process.
    @Test(.enabled(if: CgroupTestHost.detected?.hierarchies.allSatisfy { $0.version == .v1 } == true, "needs cgroup v1 to move one thread"))
    func releaseMovesTheCallerOutInsteadOfKillingIt() throws {
        try CgroupTestHost.withParent { parent in
            let pool = try CgroupPool(host: host, configuration: .init(parentName: parent, minimumFree: 1, refillInBackground: false))
            defer { try? pool.shutdown() }
            let thread = Int32(rund_gettid())
            let before = try CgroupTestHost.read("/proc/self/task/\(thread)/cgroup")
            let lease = try pool.take(sandboxID: "self")
            try lease.attach(thread: thread)
            #expect(try lease.processes() == [getpid()])
            try lease.release()
            #expect(try CgroupTestHost.read("/proc/self/task/\(thread)/cgroup") == before)
        }
    }

    /// This host's cgroup2 mount has no controllers (they are bound to v1), but renames,
    /// cgroup.procs, cgroup.kill and subtree_control handling are the v2 code paths.
    /// Many `rund run` processes at once, each with its own pool on one parent (here: a pool
    /// object per round, which adopts what looks free when it starts). On v2 an entry made on
    /// demand looks free between its mkdir and its mark: another pool may claim it first, and
    /// then it is that pool's (once, the maker removed it under its new holder).
    @Test(.enabled(if: CgroupTestHost.detected?.unifiedMountPoint != nil, "needs a cgroup2 mount"))
    func poolsOfManyProcessesNeverTakeOrRemoveEachOthersEntries() throws {
        let unified = try #require(host.unifiedMountPoint)
        let v2 = CgroupHost(mode: .v2, hierarchies: [CgroupHierarchy(version: .v2, mountPoint: unified, controllers: [])], writable: true)
        let parent = CgroupTestHost.uniqueParent()
        defer { try? CgroupPool.removeAll(host: v2, parentName: parent) }
        let failures = Mutex<[String]>([])
        try ThreadGroup.run(count: 8) { thread in
            for round in 0..<15 {
                do {
                    let pool = try CgroupPool(
                        host: v2, configuration: .init(parentName: parent, minimumFree: 0, maximumFree: 1, refillInBackground: false))
                    defer { try? pool.shutdown() }
                    let lease = try pool.take(sandboxID: "p\(thread)-\(round)")
                    // The entry is still there and still ours while held.
                    let path = try #require(lease.paths.first)
                    usleep(2000)
                    if access(path + "/cgroup.procs", F_OK) != 0 { failures.withLock { $0.append("\(path) vanished while held") } }
                    try lease.release()
                } catch {
                    failures.withLock { $0.append("\(error)") }
                }
            }
        }
        #expect(failures.withLock { $0 } == [])
    }

    @Test(.enabled(if: CgroupTestHost.detected?.unifiedMountPoint != nil, "needs a cgroup2 mount"))
    func v2MechanicsOnTheUnifiedMount() throws {
        let unified = try #require(host.unifiedMountPoint)
        let v2 = CgroupHost(mode: .v2, hierarchies: [CgroupHierarchy(version: .v2, mountPoint: unified, controllers: [])], writable: true)
        let parent = CgroupTestHost.uniqueParent()
        defer { try? CgroupPool.removeAll(host: v2, parentName: parent) }
        let pool = try CgroupPool(host: v2, configuration: .init(parentName: parent, minimumFree: 2, refillInBackground: false))
        defer { try? pool.shutdown() }
        #expect(throws: CgroupError.self) { try pool.take(sandboxID: "limited", limits: CgroupLimits(memoryBytes: 64 << 20)) }
        let lease = try pool.take(sandboxID: "v2")
        let child = try CgroupTestHost.sleeper()
        defer { child.kill(); _ = try? child.wait() }
        try lease.attach(pid: child.pid)
        let path = try #require(lease.paths.first)
        #expect(path.hasPrefix("\(unified)/\(parent)/pool-"))
        #expect(try CgroupTestHost.read("\(path)/cgroup.procs") == "\(child.pid)")
        // Another process (here: a separate collector) sees the claim, and leaves it alone.
        #expect(try CgroupGarbageCollector.collect(host: v2, parentName: parent).inUse == ["v2"])
        let dead = try CgroupTestHost.sleeper()
        let crashed = try pool.take(sandboxID: "crashed", owner: #require(ProcessIdentity.of(pid: dead.pid)) as ProcessIdentity)
        try crashed.attach(pid: dead.pid)
        dead.kill()
        _ = try dead.wait()
        let report = try CgroupGarbageCollector.collect(host: v2, parentName: parent)
        #expect(report.returned == ["crashed"] && report.inUse == ["v2"])
        try lease.release()
        #expect(try child.wait() == 128 + SIGKILL)
        #expect(try CgroupTestHost.entries(of: parent, in: v2.hierarchies[0]).allSatisfy { $0.hasPrefix("pool-") })
        #expect(pool.freeCount == 1)
    }
}
