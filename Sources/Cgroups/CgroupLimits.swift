/// Resource limits for one sandbox. nil means "no limit" (the controller's default).
public struct CgroupLimits: Sendable, Equatable, Codable {
    /// Memory limit; swap is limited to the same amount (v1 memsw) or disabled (v2 swap.max 0),
    /// so swap can never let a sandbox exceed it.
    public var memoryBytes: Int64?
    /// CFS bandwidth: at most `cpuQuotaMicros` of CPU time per `cpuPeriodMicros`.
    public var cpuQuotaMicros: Int64?
    public var cpuPeriodMicros: Int64
    /// Relative CPU weight in v1 `cpu.shares` units (2...262144, default 1024), as in the OCI
    /// spec; converted to `cpu.weight` on v2.
    public var cpuShares: Int64?
    /// cpuset lists such as "0-3,6".
    public var cpus: String?
    public var memoryNodes: String?
    public var maxProcesses: Int64?

    public static let defaultCPUPeriodMicros: Int64 = 100_000

    public init(
        memoryBytes: Int64? = nil, cpuQuotaMicros: Int64? = nil, cpuPeriodMicros: Int64 = defaultCPUPeriodMicros,
        cpuShares: Int64? = nil, cpus: String? = nil, memoryNodes: String? = nil, maxProcesses: Int64? = nil
    ) {
        self.memoryBytes = memoryBytes
        self.cpuQuotaMicros = cpuQuotaMicros
        self.cpuPeriodMicros = cpuPeriodMicros
        self.cpuShares = cpuShares
        self.cpus = cpus
        self.memoryNodes = memoryNodes
        self.maxProcesses = maxProcesses
    }

    /// Rejects values the kernel would reject, with a message that says what is allowed.
    public func validate() throws {
        if let memoryBytes, memoryBytes < 1 << 20 {
            throw CgroupError("memory limit \(memoryBytes) bytes is too small: use at least 1 MiB")
        }
        guard (1_000...1_000_000).contains(cpuPeriodMicros) else {
            throw CgroupError("cpu period \(cpuPeriodMicros) us is out of range: use 1000-1000000")
        }
        if let cpuQuotaMicros, cpuQuotaMicros < 1_000 {
            throw CgroupError("cpu quota \(cpuQuotaMicros) us is too small: use at least 1000")
        }
        if let cpuShares, !(2...262_144).contains(cpuShares) {
            throw CgroupError("cpu shares \(cpuShares) out of range: use 2-262144")
        }
        for (label, list) in [("cpus", cpus), ("memory nodes", memoryNodes)] {
            if let list, !Self.isCPUList(list) {
                throw CgroupError("\(label) \"\(list.prefix(40))\" is not a list like 0-3,6")
            }
        }
        if let maxProcesses, maxProcesses < 1 {
            throw CgroupError("max processes \(maxProcesses) must be at least 1")
        }
    }

    /// v2 `cpu.weight` (1...10000) for v1 shares, with the mapping runc and crun use.
    static func weight(forShares shares: Int64) -> Int64 {
        1 + ((shares - 2) * 9_999) / 262_142
    }

    static func isCPUList(_ text: String) -> Bool {
        guard !text.isEmpty, text.utf8.count <= 256 else { return false }
        return text.split(separator: ",", omittingEmptySubsequences: false).allSatisfy { range in
            let ends = range.split(separator: "-", omittingEmptySubsequences: false)
            return (1...2).contains(ends.count) && ends.allSatisfy { !$0.isEmpty && $0.allSatisfy(\.isNumber) && $0.count <= 5 }
        }
    }
}
