/// Which limit files exist in each of the pool's hierarchies, and what to write to them for a
/// given `CgroupLimits` (unset limits get the controller default, so a write also resets).
package struct CgroupLimitLayout: Sendable {
    package struct Setting: Hashable, Sendable {
        let hierarchy: Int
        let file: String
    }

    let hierarchies: [CgroupHierarchy]
    let available: Set<Setting>
    /// v1 cpuset defaults: the pool parent's cpus/mems (a v1 cpuset child starts empty).
    let cpusetDefaults: [Int: (cpus: String, mems: String)]

    /// Desired value of every managed file, in write order (period before quota, memory before
    /// swap; a write the kernel refuses with EINVAL for ordering is retried after the others).
    package func values(for limits: CgroupLimits) throws -> [(Setting, String)] {
        var result: [(Setting, String)] = []
        var satisfied: Set<String> = []
        func add(_ hierarchy: Int, _ file: String, _ value: String) {
            let setting = Setting(hierarchy: hierarchy, file: file)
            if available.contains(setting) { result.append((setting, value)) }
        }
        func has(_ hierarchy: Int, _ file: String) -> Bool { available.contains(Setting(hierarchy: hierarchy, file: file)) }

        for (index, hierarchy) in hierarchies.enumerated() {
            switch hierarchy.version {
            case .v1:
                if hierarchy.has("memory") {
                    let memory = limits.memoryBytes.map(String.init) ?? "-1"
                    add(index, "memory.limit_in_bytes", memory)
                    add(index, "memory.memsw.limit_in_bytes", memory)
                    if has(index, "memory.limit_in_bytes") { satisfied.insert("memory") }
                }
                if hierarchy.has("cpu") {
                    add(index, "cpu.cfs_period_us", String(limits.cpuPeriodMicros))
                    add(index, "cpu.cfs_quota_us", limits.cpuQuotaMicros.map(String.init) ?? "-1")
                    add(index, "cpu.shares", String(limits.cpuShares ?? 1024))
                    if has(index, "cpu.cfs_quota_us") { satisfied.insert("cpu") }
                }
                if hierarchy.has("cpuset"), let defaults = cpusetDefaults[index] {
                    add(index, "cpuset.cpus", limits.cpus ?? defaults.cpus)
                    add(index, "cpuset.mems", limits.memoryNodes ?? defaults.mems)
                    if has(index, "cpuset.cpus") { satisfied.insert("cpuset") }
                }
                if hierarchy.has("pids") {
                    add(index, "pids.max", limits.maxProcesses.map(String.init) ?? "max")
                    if has(index, "pids.max") { satisfied.insert("pids") }
                }
            case .v2:
                add(index, "memory.max", limits.memoryBytes.map(String.init) ?? "max")
                add(index, "memory.swap.max", limits.memoryBytes == nil ? "max" : "0")
                if has(index, "memory.max") { satisfied.insert("memory") }
                add(index, "cpu.max", "\(limits.cpuQuotaMicros.map(String.init) ?? "max") \(limits.cpuPeriodMicros)")
                add(index, "cpu.weight", String(limits.cpuShares.map(CgroupLimits.weight(forShares:)) ?? 100))
                if has(index, "cpu.max") { satisfied.insert("cpu") }
                add(index, "cpuset.cpus", limits.cpus ?? "")
                add(index, "cpuset.mems", limits.memoryNodes ?? "")
                if has(index, "cpuset.cpus") { satisfied.insert("cpuset") }
                add(index, "pids.max", limits.maxProcesses.map(String.init) ?? "max")
                if has(index, "pids.max") { satisfied.insert("pids") }
            }
        }
        let requested: [(String, Bool)] = [
            ("memory", limits.memoryBytes != nil),
            ("cpu", limits.cpuQuotaMicros != nil || limits.cpuShares != nil),
            ("cpuset", limits.cpus != nil || limits.memoryNodes != nil),
            ("pids", limits.maxProcesses != nil),
        ]
        for (controller, wanted) in requested where wanted && !satisfied.contains(controller) {
            throw CgroupError(
                "a \(controller) limit was requested but this host has no usable \(controller) controller: drop the limit or enable the controller"
            )
        }
        return result
    }

    /// Every file `values(for:)` can name, for probing which exist.
    static func candidateFiles(for hierarchy: CgroupHierarchy) -> [String] {
        switch hierarchy.version {
        case .v1:
            var files: [String] = []
            if hierarchy.has("memory") { files += ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] }
            if hierarchy.has("cpu") { files += ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.shares"] }
            if hierarchy.has("cpuset") { files += ["cpuset.cpus", "cpuset.mems"] }
            if hierarchy.has("pids") { files += ["pids.max"] }
            return files
        case .v2:
            return ["memory.max", "memory.swap.max", "cpu.max", "cpu.weight", "cpuset.cpus", "cpuset.mems", "pids.max"]
        }
    }
}
